"""Retention: old entries are blanked, and a feed that still lists them cannot bring them back."""

from datetime import timedelta

import pytest
from django.utils import timezone

from feeds.models import Entry, Feed
from feeds.retention import prune_entries
from feeds.store import store
from tests.factories import document, item

pytestmark = pytest.mark.django_db


def test_old_entries_are_pruned_and_never_come_back(settings):
    settings.FEEDS_RETENTION_DAYS = 30
    feed = Feed.objects.create(url="https://example.com/feed.xml")
    store(feed, document(item("old"), item("new")))
    Entry.objects.filter(guid="old").update(first_seen=timezone.now() - timedelta(days=31))

    assert prune_entries() == 1
    old = Entry.objects.get(key=item("old").key)
    assert old.removed_at is not None
    assert old.title == old.summary_html == ""
    assert Entry.objects.get(guid="new").removed_at is None

    # The feed still lists it: dedupe keeps it out.
    assert store(feed, document(item("old"), item("new"))) == (0, 0)
    assert Entry.objects.filter(removed_at__isnull=True).count() == 1
    assert prune_entries() == 0


def test_retention_zero_keeps_everything(settings):
    settings.FEEDS_RETENTION_DAYS = 0
    feed = Feed.objects.create(url="https://example.com/feed.xml")
    store(feed, document(item("old")))
    Entry.objects.update(first_seen=timezone.now() - timedelta(days=3650))
    assert prune_entries() == 0


def test_entries_of_blogs_stay_after_the_rivers_retention(settings):
    from blogs.models import Blog, add_source, end_blog

    settings.FEEDS_RETENTION_DAYS = 30
    followed = Feed.objects.create(url="https://example.com/followed.xml")
    ended_source = Feed.objects.create(url="https://example.com/ended.xml")
    other = Feed.objects.create(url="https://example.com/other.xml")
    store(followed, document(item("f1")))
    store(ended_source, document(item("e1")))
    store(other, document(item("o1")))
    add_source(Blog.objects.create(slug="live", title="Live"), followed)
    archive = Blog.objects.create(slug="archive", title="Archive")
    add_source(archive, ended_source)
    end_blog(archive)
    store(ended_source, document(item("e1"), item("e2")))  # after its blog ended: not the blog's
    Entry.objects.update(first_seen=timezone.now() - timedelta(days=31))

    assert prune_entries() == 2
    kept = set(Entry.objects.filter(removed_at__isnull=True).values_list("guid", flat=True))
    assert kept == {"f1", "e1"}
