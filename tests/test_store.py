"""Storing a parsed document: the database's unique constraint decides what is new."""

import pytest
from django.utils import timezone

from feeds.models import Entry, Feed
from feeds.store import MAX_UPDATES_PER_ENTRY, store
from tests.factories import document, item
from tests.threads import at_once

pytestmark = pytest.mark.django_db


@pytest.fixture
def feed():
    return Feed.objects.create(url="https://example.com/feed.xml")


def test_it_stores_new_entries_once(feed):
    assert store(feed, document(item("a"), item("b"))) == (2, 0)
    assert store(feed, document(item("a"), item("b"))) == (0, 0)
    assert Entry.objects.count() == 2


def test_the_newest_entry_of_a_document_gets_the_highest_cursor(feed):
    store(feed, document(item("newest"), item("older"), item("oldest")))
    ordered = list(Entry.objects.order_by("seq").values_list("guid", flat=True))
    assert ordered == ["oldest", "older", "newest"]


def test_an_entry_changed_in_place_is_updated_not_duplicated(feed):
    store(feed, document(item("a", title="First")))
    before = Entry.objects.get()
    assert store(feed, document(item("a", title="Corrected"))) == (0, 1)
    after = Entry.objects.get()
    assert after.title == "Corrected"
    assert after.seq > before.seq
    assert after.created_seq == before.created_seq


def test_an_entry_that_churns_stops_updating_after_the_cap(feed):
    for n in range(MAX_UPDATES_PER_ENTRY + 5):
        store(feed, document(item("a", title=f"Version {n}")))
    entry = Entry.objects.get()
    assert entry.update_count == MAX_UPDATES_PER_ENTRY
    assert entry.title == f"Version {MAX_UPDATES_PER_ENTRY}"


def test_an_entry_removed_by_an_admin_stays_removed(feed):
    store(feed, document(item("a")))
    entry = Entry.objects.get()
    entry.removed_at = timezone.now()
    entry.save()
    assert store(feed, document(item("a", title="Changed"), item("b"))) == (1, 0)
    assert Entry.objects.get(guid="a").removed_at is not None
    assert Entry.objects.get(guid="a").title != "Changed"


def test_a_missing_date_is_set_to_first_seen(feed):
    entry_item = item("a")
    entry_item.published = None
    store(feed, document(entry_item))
    entry = Entry.objects.get()
    assert entry.published == entry.first_seen == entry.updated


def test_it_records_the_feed_title(feed):
    store(feed, document(item("a"), title="The Daily"))
    feed.refresh_from_db()
    assert feed.title == "The Daily"


@pytest.mark.django_db(transaction=True)
def test_concurrent_stores_of_one_document_never_duplicate():
    feed = Feed.objects.create(url="https://example.com/race.xml")
    doc = document(*[item(f"e{n}") for n in range(30)])
    results = at_once(lambda: store(Feed.objects.get(pk=feed.pk), doc), 4)
    assert Entry.objects.count() == 30
    assert sum(new for new, _ in results) == 30
