"""Change numbers are commit order, with no gaps, however transactions interleave."""

import threading
import time

import pytest
from django.db import connection, transaction

from feeds.changelog import next_seq
from feeds.models import Entry, Feed
from feeds.store import store
from tests.factories import document, item


@pytest.mark.django_db(transaction=True)
def test_a_later_number_never_commits_before_an_earlier_one():
    feed = Feed.objects.create(url="https://example.com/a.xml")
    seen = {}
    slow_has_number = threading.Event()

    def slow_writer():
        with transaction.atomic():
            store(feed, document(item("slow")))
            seen["slow"] = Entry.objects.get(key=item("slow").key).seq
            slow_has_number.set()
            time.sleep(0.5)  # still uncommitted while the other writer tries
            seen["slow commits at"] = time.monotonic()
        connection.close()

    def fast_writer():
        slow_has_number.wait(5)
        store(feed, document(item("fast")))
        seen["fast committed at"] = time.monotonic()
        seen["fast"] = Entry.objects.get(key=item("fast").key).seq
        connection.close()

    threads = [threading.Thread(target=slow_writer), threading.Thread(target=fast_writer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert seen["fast committed at"] > seen["slow commits at"], "the later number committed first"
    assert seen["fast"] == seen["slow"] + 1


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_change_gives_its_number_back():
    with transaction.atomic():
        first = next_seq()
    try:
        with transaction.atomic():
            next_seq()
            raise RuntimeError("rollback")
    except RuntimeError:
        pass
    with transaction.atomic():
        assert next_seq() == first + 1


@pytest.mark.django_db(transaction=True)
def test_the_counter_comes_back_after_a_flush_above_every_stored_number():
    feed = Feed.objects.create(url="https://example.com/b.xml")
    store(feed, document(item("one"), item("two")))
    top = Entry.objects.order_by("-seq").first().seq
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM feeds_changecounter")
    with transaction.atomic():
        assert next_seq() == top + 1
