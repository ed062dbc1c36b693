"""A fetch that cannot finish within its bounds is an error with backoff, and one feed never affects
another (issue 10, items 4 and 5). Real servers, real PostgreSQL; only the clock and, for the task's
time limit, the signal that Celery sends are stood in for.
"""

import signal
import time
from datetime import timedelta

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone

from feeds import ingest, schedule
from feeds.ingest import TIME_LIMIT_ERROR, fetch_and_store_many
from feeds.models import Feed
from feeds.schedule import REDIRECTS_TO_MOVE
from tests import test_bounds_fetching, test_ingest
from tests.feedserver import rss
from tests.test_ingest import add, assert_backing_off, assert_unaffected, tick

# Fixtures shared with the ingest and fetching tests.
bystander, clock = test_ingest.bystander, test_ingest.clock
one_batch, quick_timeouts = test_ingest.one_batch, test_ingest.quick_timeouts
brotli_around_empty_gzip = test_bounds_fetching.brotli_around_empty_gzip

pytestmark = pytest.mark.django_db
HEAD = '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>T</title>'


def test_a_feed_of_a_million_and_a_half_empty_items_is_an_error_and_backs_off(
    feed_server, bystander, settings
):
    # Observed: 52 s of CPU, and counted as a success (no backoff).
    settings.FEEDS_MAX_BYTES = 11 * 1024 * 1024
    settings.FEEDS_TOTAL_TIMEOUT = settings.FEEDS_READ_TIMEOUT = 10  # 10 MB on a busy machine
    feed = add(feed_server.route("/items.xml", HEAD + "<item/>" * 1_500_000 + "</channel></rss>"))

    started = time.thread_time()
    tick()

    assert time.thread_time() - started < 5
    assert_backing_off(feed, "too many items: the document lists more than 10,000")
    assert_unaffected(bystander, feed_server)


def test_a_document_too_costly_to_parse_is_an_error_and_backs_off(feed_server, bystander, settings):
    settings.FEEDS_PARSE_TIMEOUT = 0.1
    feed = add(feed_server.route("/costly.xml", HEAD + "<item><title>" + "<a/>" * 1_000_000))

    started = time.thread_time()
    tick()

    assert time.thread_time() - started < 0.1 + 2  # the budget, and fetching and storing both feeds
    assert_backing_off(feed, "too costly to read: parsing took more than 0.1 s of CPU")
    assert_unaffected(bystander, feed_server)


def test_a_permanent_redirect_to_a_3000_character_url_poisons_no_batch(feed_server, bystander, clock):
    # Observed (PostgreSQL): the release failed on the too-long URL, and every feed of the batch kept
    # its lease for 90 s with nothing of its fetch recorded.
    long_path = "/moved/" + "x" * 3000 + ".xml"
    feed_server.route(long_path, rss(("m1", "Moved one")))
    feed = add(feed_server.route("/moving.xml", status=301, headers={"Location": long_path}))

    for n in range(1, REDIRECTS_TO_MOVE + 2):
        tick()
        feed.refresh_from_db()
        assert (feed.lease_until, feed.fetch_count, feed.error_count) == (None, n, 0)
        assert (feed.redirect_url, feed.url) == ("", feed_server.url("/moving.xml"))
        assert_unaffected(bystander, feed_server, fetches=n)
        clock.advance(5)
    assert list(feed.entries.values_list("title", flat=True)) == ["Moved one"]


def leased(*feeds: Feed) -> None:
    Feed.objects.filter(pk__in=[f.pk for f in feeds]).update(
        lease_until=timezone.now() + timedelta(seconds=90)
    )


def test_a_value_too_long_for_its_column_is_refused_with_a_clear_error(feed_server):
    moving, calm = add(feed_server.url("/a.xml")), add(feed_server.url("/b.xml"))
    leased(moving, calm)
    now = timezone.now()

    schedule.release(
        [
            (
                moving.pk,
                {"last_fetched_at": now, "redirect_url": "https://e.com/" + "a" * 3000, "redirect_count": 1},
            ),
            (calm.pk, {"last_fetched_at": now, "etag": '"v1"'}),
        ]
    )

    moving.refresh_from_db()
    calm.refresh_from_db()
    assert (moving.lease_until, moving.fetch_count, moving.last_fetched_at) == (None, 1, now)
    assert moving.last_error == (
        "refused: too long to record: redirect_url (3014 characters; the column holds 2048)"
    )
    assert moving.redirect_url == ""
    assert (calm.lease_until, calm.fetch_count, calm.etag, calm.last_error) == (None, 1, '"v1"', "")


def test_a_feed_whose_outcome_cannot_be_written_leaves_the_others_recorded(feed_server):
    broken, calm = add(feed_server.url("/a.xml")), add(feed_server.url("/b.xml"))
    leased(broken, calm)
    now = timezone.now()

    # A negative count breaks the column's CHECK constraint: the batch's UPDATE fails as a whole.
    schedule.release([(broken.pk, {"error_count": -1}), (calm.pk, {"last_fetched_at": now, "etag": '"v2"'})])

    broken.refresh_from_db()
    calm.refresh_from_db()
    assert (calm.lease_until, calm.fetch_count, calm.etag, calm.last_fetched_at) == (None, 1, '"v2"', now)
    assert (broken.lease_until, broken.fetch_count, broken.error_count) == (None, 1, 1)
    assert broken.last_error == "internal error: the fetch's outcome could not be recorded (IntegrityError)"


@pytest.fixture
def soft_time_limit():
    """Celery's soft time limit, as the worker delivers it: a signal that raises in the task's thread."""

    def expire(signum, frame):
        raise SoftTimeLimitExceeded()

    previous = signal.signal(signal.SIGALRM, expire)
    yield lambda seconds: signal.setitimer(signal.ITIMER_REAL, seconds)
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def test_downloads_a_task_gives_up_stop_at_once(
    feed_server, settings, monkeypatch, soft_time_limit, brotli_around_empty_gzip
):
    settings.FEEDS_MAX_BYTES = 1 << 40  # nothing but the deadline stops decoding: 1 GB of empty blocks
    settings.FEEDS_TOTAL_TIMEOUT = settings.FEEDS_READ_TIMEOUT = 60
    # One download thread: once the task gives up, it is free again only if its download stopped.
    settings.FEEDS_FETCH_THREADS = 1
    monkeypatch.setattr(ingest, "_pool", None)
    body = brotli_around_empty_gzip
    feed = add(feed_server.route("/slow.xml", body=body, headers={"Content-Encoding": "gzip, br"}))

    soft_time_limit(0.5)
    outcomes = fetch_and_store_many([feed.pk])
    given_up = time.monotonic()
    pool = ingest._executor()
    free_at = pool.submit(time.monotonic).result(timeout=60)
    pool.shutdown()

    # Decoding it all takes seconds of CPU (over 15 s here when the machine is busy).
    assert free_at - given_up < 1.0
    assert outcomes[feed.pk].error == TIME_LIMIT_ERROR
    assert_backing_off(feed, TIME_LIMIT_ERROR)
