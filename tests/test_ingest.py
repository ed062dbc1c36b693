"""Ingest end to end against real HTTP servers: one tick of the beat, run eagerly in this process.

Every test puts a misbehaving feed and a well-behaved bystander in the same dispatch_due_feeds run (in the
same batch, fetched concurrently), then checks what was stored on each feed and in the entries. Nothing but
the clock is faked (and, where the address guard is on, DNS: see `public`).
"""

import gzip
import socket
import threading
import time
import zlib
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from django.utils import timezone

from feeds import ingest, schedule
from feeds.ingest import fetch_and_store
from feeds.models import Entry, Feed
from feeds.schedule import PAUSE_AFTER_ERRORS, REDIRECTS_TO_MOVE
from feeds.store import MAX_UPDATES_PER_ENTRY
from feeds.tasks import dispatch_due_feeds
from tests.feedserver import rss
from tests.threads import at_once

pytestmark = pytest.mark.django_db

MB = 1024 * 1024
PUBLIC_IP = "93.184.216.34"
INTERVAL = 5


@pytest.fixture(autouse=True)
def one_batch(monkeypatch):
    """A small tick is normally spread over several tasks; here every due feed shares one batch."""
    monkeypatch.setattr(schedule, "SPREAD", 1)


@pytest.fixture(autouse=True)
def quick_timeouts(settings, allow_private):
    settings.FEEDS_CONNECT_TIMEOUT = 1
    settings.FEEDS_READ_TIMEOUT = 1
    settings.FEEDS_TOTAL_TIMEOUT = 1


@pytest.fixture
def release():
    """Set at teardown (before the server stops): handlers that hang or drip wait on it."""
    event = threading.Event()
    yield event
    event.set()


class Clock:
    def __init__(self, real_now):
        self.real_now = real_now
        self.offset = timedelta()

    def now(self):
        return self.real_now() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch):
    """The only fake: Django's clock, moved forward by the test."""
    fake = Clock(timezone.now)
    monkeypatch.setattr(timezone, "now", fake.now)
    return fake


def tick() -> int:
    """One beat tick, as the beat sends it; CELERY_TASK_ALWAYS_EAGER runs its fetch batches right here."""
    return dispatch_due_feeds.delay().get()


def add(url: str) -> Feed:
    return Feed.objects.create(url=url, interval=INTERVAL)


@pytest.fixture
def bystander(feed_server):
    """A healthy feed due in the same tick as the feed under test."""
    url = feed_server.route("/bystander.xml", rss(("b1", "Calm one"), ("b2", "Calm two")))
    return add(url)


def assert_unaffected(feed: Feed, server, path="/bystander.xml", fetches=1):
    feed.refresh_from_db()
    now = timezone.now()
    assert server.hits[path] == fetches
    assert (feed.error_count, feed.last_error, feed.lease_until) == (0, "", None)
    assert feed.next_fetch_reason == Feed.Why.INTERVAL
    assert now < feed.next_fetch_at <= now + timedelta(seconds=INTERVAL)
    assert sorted(feed.entries.values_list("title", flat=True)) == ["Calm one", "Calm two"]


def assert_backing_off(feed: Feed, error: str, errors: int = 1):
    feed.refresh_from_db()
    now = timezone.now()
    assert feed.last_error.startswith(error), feed.last_error
    assert feed.error_count == errors
    assert feed.lease_until is None
    assert feed.next_fetch_reason == Feed.Why.BACKOFF
    wait = INTERVAL * 2**errors
    assert (
        now + timedelta(seconds=wait * 0.8 - 1) <= feed.next_fetch_at <= now + timedelta(seconds=wait * 1.2)
    )
    assert feed.etag == feed.last_modified == feed.body_hash == ""


def compressed_zeros(size: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = bytes(MB)
    return b"".join(compressor.compress(block) for _ in range(size // MB)) + compressor.flush()


# --- Bounds


def test_a_server_that_hangs_is_cut_off_at_the_deadline(feed_server, release, bystander):
    def hang(handler):
        release.wait(10)

    feed = add(feed_server.route("/hang.xml", handler=hang))
    started = time.monotonic()

    assert tick() == 2

    assert time.monotonic() - started < 3
    assert_backing_off(feed, "timed out after 1 s")
    assert feed.entries.count() == 0
    assert_unaffected(bystander, feed_server)


def test_a_server_that_drips_is_cut_off_at_the_deadline(feed_server, release, bystander):
    def drip(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "application/rss+xml")
        handler.end_headers()
        handler.wfile.write(b'<?xml version="1.0"?><rss version="2.0"><channel><title>Slow</title>')
        try:
            while not release.wait(0.05):
                handler.wfile.write(b" ")
                handler.wfile.flush()
        except OSError:
            pass  # we hung up

    feed = add(feed_server.route("/drip.xml", handler=drip))
    started = time.monotonic()

    tick()

    assert time.monotonic() - started < 3
    assert_backing_off(feed, "timed out after 1 s")
    assert feed.entries.count() == 0
    assert_unaffected(bystander, feed_server)


def test_a_50_mb_body_is_refused_at_the_cap_without_reading_it_all(feed_server, bystander, settings):
    sent = []

    def huge(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", str(50 * MB))
        handler.end_headers()
        chunk = b"<!--" + b"x" * (MB - 7) + b"-->"
        try:
            handler.wfile.write(b'<?xml version="1.0"?><rss version="2.0"><channel>')
            for _ in range(50):
                handler.wfile.write(chunk)
                sent.append(len(chunk))
        except OSError:
            pass  # we hung up

    settings.FEEDS_TOTAL_TIMEOUT = 10
    feed = add(feed_server.route("/huge.xml", handler=huge))

    tick()

    assert_backing_off(feed, f"response is larger than the limit of {settings.FEEDS_MAX_BYTES} bytes")
    assert sum(sent) < 40 * MB
    assert feed.entries.count() == 0
    assert_unaffected(bystander, feed_server)


def test_a_gzip_bomb_is_refused_at_the_cap_without_expanding(feed_server, bystander, settings):
    bomb = compressed_zeros(100 * MB)
    feed = add(feed_server.route("/bomb.xml", bomb, headers={"Content-Encoding": "gzip"}))
    settings.FEEDS_TOTAL_TIMEOUT = 10

    tick()

    assert_backing_off(feed, f"response is larger than the limit of {settings.FEEDS_MAX_BYTES} bytes")
    assert feed.entries.count() == 0
    assert_unaffected(bystander, feed_server)


def test_a_gzipped_feed_is_stored(feed_server, bystander):
    body = gzip.compress(rss(("z1", "Zipped")).encode())
    feed = add(feed_server.route("/zipped.xml", body, headers={"Content-Encoding": "gzip"}))

    tick()

    assert list(feed.entries.values_list("title", flat=True)) == ["Zipped"]
    assert_unaffected(bystander, feed_server)


# --- Politeness


def test_500_then_200_backs_off_then_recovers(feed_server, bystander, clock):
    url = feed_server.route("/flaky.xml", status=500)
    feed = add(url)

    tick()

    assert_backing_off(feed, "HTTP 500 Internal Server Error")
    assert feed.entries.count() == 0
    assert_unaffected(bystander, feed_server)

    tick()  # not due yet: backing off
    assert feed_server.hits["/flaky.xml"] == 1

    feed_server.route("/flaky.xml", rss(("f1", "Back")))
    clock.advance(INTERVAL * 2 * 1.2)
    assert tick() == 2

    feed.refresh_from_db()
    assert feed_server.hits["/flaky.xml"] == 2
    assert (feed.error_count, feed.next_fetch_reason) == (0, Feed.Why.INTERVAL)
    assert feed.next_fetch_at <= timezone.now() + timedelta(seconds=INTERVAL)
    assert feed.last_error.startswith("HTTP 500")  # the last error stays for the record, not counted
    assert list(feed.entries.values_list("title", flat=True)) == ["Back"]
    assert_unaffected(bystander, feed_server, fetches=2)


@pytest.mark.usefixtures("static_files")
def test_backoff_doubles_then_the_feed_is_paused_and_shown_to_admins(
    feed_server, bystander, clock, admin_client
):
    feed = add(feed_server.route("/down.xml", status=502))
    waits = []
    for _ in range(PAUSE_AFTER_ERRORS):
        before = timezone.now()
        tick()
        feed.refresh_from_db()
        waits.append((feed.next_fetch_at - before).total_seconds())
        clock.advance(max(waits[-1], INTERVAL) + 0.1)

    assert feed_server.hits["/down.xml"] == PAUSE_AFTER_ERRORS
    assert feed.error_count == PAUSE_AFTER_ERRORS
    assert feed.next_fetch_reason == Feed.Why.PAUSED
    for n, wait in enumerate(waits[:-1], start=1):
        expected = min(INTERVAL * 2**n, 3600)
        assert expected * 0.8 - 1 <= wait <= expected * 1.2 + 1, (n, wait)
    assert waits[-1] == pytest.approx(24 * 3600, abs=5)
    assert feed.enabled  # paused, not dropped: it is tried again tomorrow, and admins see why
    [shown] = [f for f in admin_client.get("/api/feeds/").json()["items"] if f["id"] == feed.pk]
    assert shown["next_fetch_reason"] == "paused"
    assert shown["error_count"] == PAUSE_AFTER_ERRORS
    assert shown["last_error"].startswith("HTTP 502")
    listing = admin_client.get("/admin/feeds/feed/?next_fetch_reason__exact=paused").content.decode()
    assert "paused after repeated errors" in listing
    assert "HTTP 502 Bad Gateway" in listing


def test_429_with_retry_after_seconds_is_honoured_and_not_an_error(feed_server, bystander, clock, client):
    feed = add(feed_server.route("/busy.xml", status=429, headers={"Retry-After": "120"}))

    tick()

    feed.refresh_from_db()
    now = timezone.now()
    assert (feed.error_count, feed.last_error, feed.lease_until) == (0, "", None)
    assert feed.next_fetch_reason == Feed.Why.RETRY_AFTER
    assert now + timedelta(seconds=118) <= feed.next_fetch_at <= now + timedelta(seconds=120)
    assert_unaffected(bystander, feed_server)
    [shown] = [f for f in client.get("/api/feeds/").json()["items"] if f["id"] == feed.pk]
    assert shown["next_fetch_reason"] == "retry-after"
    assert shown["next_fetch_at"].startswith(feed.next_fetch_at.strftime("%Y-%m-%dT%H:%M"))

    clock.advance(60)
    tick()
    assert feed_server.hits["/busy.xml"] == 1  # not before the server said

    feed_server.route("/busy.xml", rss(("r1", "Ready")))
    clock.advance(61)
    tick()
    feed.refresh_from_db()
    assert feed_server.hits["/busy.xml"] == 2
    assert feed.next_fetch_reason == Feed.Why.INTERVAL
    assert list(feed.entries.values_list("title", flat=True)) == ["Ready"]


def test_503_with_a_retry_after_date_is_honoured_and_capped(feed_server, bystander):
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=300), usegmt=True)
    later = format_datetime(datetime.now(UTC) + timedelta(days=30), usegmt=True)
    soon_feed = add(feed_server.route("/soon.xml", status=503, headers={"Retry-After": soon}))
    late_feed = add(feed_server.route("/late.xml", status=503, headers={"Retry-After": later}))

    tick()

    now = timezone.now()
    soon_feed.refresh_from_db()
    late_feed.refresh_from_db()
    assert now + timedelta(seconds=290) <= soon_feed.next_fetch_at <= now + timedelta(seconds=301)
    assert late_feed.next_fetch_at == pytest.approx(now + schedule.MAX_RETRY_AFTER, abs=timedelta(seconds=5))
    for feed in (soon_feed, late_feed):
        assert (feed.error_count, feed.last_error, feed.next_fetch_reason) == (0, "", "retry-after")
    assert_unaffected(bystander, feed_server)


def test_503_without_retry_after_is_an_error_and_backs_off(feed_server, bystander):
    feed = add(feed_server.route("/unavailable.xml", status=503))

    tick()

    assert_backing_off(feed, "HTTP 503 Service Unavailable")
    assert_unaffected(bystander, feed_server)


def test_every_fetch_is_conditional_and_304_keeps_the_validators(feed_server, bystander, clock):
    seen = []

    def conditional(handler):
        seen.append((handler.headers["If-None-Match"], handler.headers["If-Modified-Since"]))
        if handler.headers["If-None-Match"] == '"v1"':
            handler.send_response(304)  # no validators repeated: RFC 9110 says SHOULD, not MUST
            handler.end_headers()
            return
        body = rss(("c1", "Conditional")).encode()
        handler.send_response(200)
        handler.send_header("ETag", '"v1"')
        handler.send_header("Last-Modified", "Wed, 01 Jan 2025 00:00:00 GMT")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    feed = add(feed_server.route("/conditional.xml", handler=conditional))
    tick()
    for _ in range(2):
        clock.advance(INTERVAL)
        tick()

    assert seen == [(None, None)] + [('"v1"', "Wed, 01 Jan 2025 00:00:00 GMT")] * 2
    feed.refresh_from_db()
    assert (feed.etag, feed.last_modified) == ('"v1"', "Wed, 01 Jan 2025 00:00:00 GMT")
    assert (feed.fetch_count, feed.not_modified_count, feed.error_count) == (3, 2, 0)
    assert feed.next_fetch_reason == Feed.Why.INTERVAL
    assert list(feed.entries.values_list("title", flat=True)) == ["Conditional"]
    assert_unaffected(bystander, feed_server, fetches=3)


def test_an_unchanged_body_without_validators_is_not_parsed_again(feed_server, bystander, clock, monkeypatch):
    feed = add(feed_server.route("/static.xml", rss(("s1", "Static"))))
    tick()
    clock.advance(INTERVAL)
    parses = []
    monkeypatch.setattr(ingest, "parse", lambda *a, **k: parses.append(1))

    tick()

    feed.refresh_from_db()
    assert parses == []
    assert (feed.fetch_count, feed.not_modified_count) == (2, 1)
    assert feed.entries.count() == 1
    assert_unaffected(bystander, feed_server, fetches=2)


def test_a_permanent_redirect_moves_the_feed_after_repeated_answers(feed_server, bystander, clock):
    new_url = feed_server.route("/new.xml", rss(("m1", "Moved")))
    feed = add(feed_server.route("/old.xml", status=301, headers={"Location": "/new.xml"}))
    old_url = feed.url
    for n in range(1, REDIRECTS_TO_MOVE + 1):
        tick()
        clock.advance(INTERVAL)
        feed.refresh_from_db()
        if n < REDIRECTS_TO_MOVE:
            assert (feed.url, feed.redirect_url, feed.redirect_count) == (old_url, new_url, n)

    assert (feed.url, feed.redirect_url, feed.redirect_count) == (new_url, "", 0)
    assert feed.entries.count() == 1
    tick()
    assert feed_server.hits["/old.xml"] == REDIRECTS_TO_MOVE
    assert feed_server.hits["/new.xml"] == REDIRECTS_TO_MOVE + 1
    assert_unaffected(bystander, feed_server, fetches=REDIRECTS_TO_MOVE + 1)


@pytest.mark.parametrize("status", [302, 307])
def test_a_temporary_redirect_is_never_stored(feed_server, bystander, clock, status):
    feed_server.route("/elsewhere.xml", rss(("t1", "Temporary")))
    feed = add(feed_server.route("/here.xml", status=status, headers={"Location": "/elsewhere.xml"}))
    for n in range(REDIRECTS_TO_MOVE + 2):
        clock.advance(INTERVAL if n else 0)
        tick()

    feed.refresh_from_db()
    assert feed.url.endswith("/here.xml")
    assert (feed.redirect_url, feed.redirect_count, feed.error_count) == ("", 0, 0)
    assert feed.entries.count() == 1
    assert_unaffected(bystander, feed_server, fetches=REDIRECTS_TO_MOVE + 2)


def test_a_permanent_redirect_that_changes_target_does_not_move_the_feed(feed_server, bystander, clock):
    feed_server.route("/a.xml", rss(("x", "X")))
    feed_server.route("/b.xml", rss(("x", "X")))
    feed = add(feed_server.route("/wobbly.xml", status=301, headers={"Location": "/a.xml"}))
    for n in range(2 * REDIRECTS_TO_MOVE):
        feed_server.route("/wobbly.xml", status=301, headers={"Location": "/a.xml" if n % 2 else "/b.xml"})
        clock.advance(INTERVAL if n else 0)
        tick()

    feed.refresh_from_db()
    assert feed.url.endswith("/wobbly.xml")
    assert feed.redirect_count == 1
    assert_unaffected(bystander, feed_server, fetches=2 * REDIRECTS_TO_MOVE)


def test_a_redirect_loop_is_an_error(feed_server, bystander):
    feed_server.route("/loop-b.xml", status=301, headers={"Location": "/loop-a.xml"})
    feed = add(feed_server.route("/loop-a.xml", status=301, headers={"Location": "/loop-b.xml"}))

    tick()

    assert_backing_off(feed, "too many redirects (a redirect loop)")
    assert (feed.redirect_url, feed.redirect_count) == ("", 0)
    assert feed_server.hits["/loop-a.xml"] == feed_server.hits["/loop-b.xml"] == 1
    assert_unaffected(bystander, feed_server)


@pytest.fixture
def public(monkeypatch):
    """Names that resolve to a public address, routed to 127.0.0.1: the guard stays on, HTTP stays real."""
    names = {}
    real_getaddrinfo, real_create_connection = socket.getaddrinfo, socket.create_connection

    def getaddrinfo(host, port, *args, **kwargs):
        if host in names:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (names[host], port or 0))]
        return real_getaddrinfo(host, port, *args, **kwargs)

    def create_connection(address, *args, **kwargs):
        host, port = address
        return real_create_connection(("127.0.0.1" if host == PUBLIC_IP else host, port), *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    return names


def test_a_redirect_to_a_private_address_is_refused_and_never_reaches_it(feed_server, public, settings):
    settings.FEEDS_ALLOW_PRIVATE_NETWORKS = False
    public["news.example"] = PUBLIC_IP
    private = feed_server.__class__().start()
    try:
        private.route("/admin", "internal secrets")
        feed_server.route("/go.xml", status=302, headers={"Location": private.url("/admin")})
        feed_server.route("/calm.xml", rss(("b1", "Calm one"), ("b2", "Calm two")))
        feed = add(f"http://news.example:{feed_server.port}/go.xml")
        calm = add(f"http://news.example:{feed_server.port}/calm.xml")

        tick()

        assert_backing_off(feed, "redirect refused: 127.0.0.1 is not a public address")
        assert feed.entries.count() == 0
        assert feed_server.hits["/go.xml"] == 1
        assert private.hits == {}  # the private server saw nothing at all
        assert_unaffected(calm, feed_server, "/calm.xml")
    finally:
        private.stop()


# --- Formats


def test_an_html_page_is_not_a_feed(feed_server, bystander):
    page = """<!DOCTYPE html><html><head><title>Blog</title>
        <link rel="alternate" type="application/rss+xml" href="/feed.xml"></head><body>Hi</body></html>"""
    feed = add(feed_server.route("/blog/", page, headers={"Content-Type": "text/html"}))

    tick()

    assert_backing_off(feed, "not a feed: this is an HTML page; it links to 1 feed(s), e.g. ")
    assert feed.last_error.endswith(feed_server.url("/feed.xml"))
    assert feed.entries.count() == 0
    assert_unaffected(bystander, feed_server)


def test_rss_atom_and_json_feeds_are_sniffed_from_the_bytes(feed_server, bystander):
    atom = """<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"
        xml:base="https://atom.example/blog/"><title>A</title><id>urn:a</id><updated>2024-01-01T00:00:00Z</updated>
        <entry><id>urn:a:1</id><title>Atom entry</title><link href="posts/1"/>
        <updated>2024-01-01T00:00:00Z</updated></entry></feed>"""
    json_feed = """{"version": "https://jsonfeed.org/version/1.1", "title": "J",
        "items": [{"id": "j1", "title": "Json entry", "url": "/posts/j1", "content_text": "Hi"}]}"""
    latin = rss(("l1", "Caf\u00e9")).replace("utf-8", "iso-8859-1").encode("latin-1")
    feeds = [
        add(feed_server.route("/atom", atom, headers={"Content-Type": "text/plain"})),
        add(feed_server.route("/json", json_feed, headers={"Content-Type": "text/html"})),
        add(feed_server.route("/latin", latin)),
    ]

    tick()

    stored = [list(f.entries.values_list("title", "link")) for f in feeds]
    assert stored == [
        [("Atom entry", "https://atom.example/blog/posts/1")],
        [("Json entry", feed_server.url("/posts/j1"))],
        [("Caf\u00e9", "https://example.com/l1")],
    ]
    assert_unaffected(bystander, feed_server)


# --- Identity and dedupe


def test_missing_and_duplicate_ids(feed_server, bystander, clock):
    items = """
        <item><title>No id</title><link>https://example.com/no-id</link></item>
        <item><title>No id or link</title><description>Just words</description></item>
        <item><guid>dup</guid><title>Repeated</title><link>https://example.com/r</link></item>
        <item><guid>dup</guid><title>Repeated</title><link>https://example.com/r</link></item>
        <item><guid>same</guid><title>Shared one</title><link>https://example.com/s1</link></item>
        <item><guid>same</guid><title>Shared two</title><link>https://example.com/s2</link></item>
        <item><guid>same</guid><title>Shared three</title><link>https://example.com/s3</link></item>
    """
    doc = f'<?xml version="1.0"?><rss version="2.0"><channel><title>Ids</title>{items}</channel></rss>'
    feed = add(feed_server.route("/ids.xml", doc))

    tick()

    titles = sorted(feed.entries.values_list("title", flat=True))
    assert titles == ["No id", "No id or link", "Repeated", "Shared one", "Shared three", "Shared two"]
    assert feed.entries.values("key").distinct().count() == 6

    # The same items again, in a document that differs: still nothing new.
    feed_server.route("/ids.xml", doc.replace("<title>Ids</title>", "<title>Ids again</title>"))
    clock.advance(INTERVAL)
    tick()
    assert feed.entries.count() == 6
    assert_unaffected(bystander, feed_server, fetches=2)


def test_an_entry_changed_in_place_is_updated_and_pushed_once(
    feed_server, bystander, clock, published, django_capture_on_commit_callbacks
):
    feed = add(feed_server.route("/edit.xml", rss(("e1", "Frist"), ("e2", "Other"))))
    with django_capture_on_commit_callbacks(execute=True):
        tick()
    first = Entry.objects.get(feed=feed, guid="e1")
    assert len(published()) == 4  # two entries of each feed

    feed_server.route("/edit.xml", rss(("e1", "First"), ("e2", "Other")))
    for _ in range(3):  # the corrected document, fetched three times
        clock.advance(INTERVAL)
        with django_capture_on_commit_callbacks(execute=True):
            tick()

    updated = Entry.objects.get(feed=feed, guid="e1")
    assert (updated.pk, updated.title, updated.update_count) == (first.pk, "First", 1)
    assert updated.seq > first.seq
    assert feed.entries.count() == 2
    [message] = published()
    assert '"type":"entry.updated"' in message["text"]
    assert message["seq"] == updated.seq
    assert_unaffected(bystander, feed_server, fetches=4)


def test_an_entry_that_churns_stops_being_updated(feed_server, bystander, clock):
    feed = add(feed_server.route("/churn.xml", rss(("c", "Version 0"))))
    for n in range(MAX_UPDATES_PER_ENTRY + 3):
        feed_server.route("/churn.xml", rss(("c", f"Version {n}")))
        clock.advance(INTERVAL if n else 0)
        tick()

    entry = feed.entries.get()
    assert entry.update_count == MAX_UPDATES_PER_ENTRY
    assert entry.title == f"Version {MAX_UPDATES_PER_ENTRY}"
    assert_unaffected(bystander, feed_server, fetches=MAX_UPDATES_PER_ENTRY + 3)


def test_an_entry_an_admin_removed_stays_removed(feed_server, bystander, clock):
    feed = add(feed_server.route("/removed.xml", rss(("gone", "Unwanted"))))
    tick()
    entry = feed.entries.get()
    entry.removed_at = timezone.now()
    entry.save(update_fields=["removed_at"])

    feed_server.route("/removed.xml", rss(("new", "Fresh"), ("gone", "Unwanted, edited")))
    clock.advance(INTERVAL)
    tick()

    entry.refresh_from_db()
    assert entry.removed_at is not None
    assert entry.title == "Unwanted"
    assert sorted(feed.entries.values_list("title", flat=True)) == ["Fresh", "Unwanted"]
    assert_unaffected(bystander, feed_server, fetches=2)


@pytest.mark.django_db(transaction=True)
def test_concurrent_fetches_of_one_feed_fetch_once(feed_server, release):
    def slow(handler):
        release.wait(0.5)
        body = rss(("one", "Only once")).encode()
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    feed = add(feed_server.route("/slow.xml", handler=slow))
    outcomes = [str(outcome) for outcome in at_once(lambda: fetch_and_store(feed.pk), 3)]

    assert sorted(outcomes) == ["1 new, 0 updated"] + ["skipped: already being fetched"] * 2
    assert feed_server.hits["/slow.xml"] == 1
    assert Entry.objects.filter(feed=feed).count() == 1
    feed.refresh_from_db()
    assert (feed.lease_until, feed.fetch_count) == (None, 1)


# --- Content safety, end to end


def test_stored_content_is_safe(feed_server, bystander):
    future = format_datetime(datetime.now(UTC) + timedelta(days=400), usegmt=True)
    title = "&lt;b&gt;Bold&lt;/b&gt; &amp; &lt;script&gt;alert(1)&lt;/script&gt;"
    body = """<p onclick="steal()">Hi<script>alert(1)</script><a href="javascript:alert(1)">x</a>
        <a href="/rel">rel</a><img src="x.png" onerror="steal()"><iframe src="https://evil.example/"></iframe>
        <a href="mailto:ed@example.com">mail</a></p>"""
    items = f"""
        <item><guid>x1</guid><title>{title}</title><link>javascript:alert(1)</link>
          <description><![CDATA[{body}]]></description><pubDate>{future}</pubDate></item>
        <item><guid>x2</guid><title>Nul\x00byte</title><link>https://example.com/x2</link>
          <description>plain</description></item>"""
    doc = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Hostile</title>'
        f"<link>https://hostile.example/</link>{items}</channel></rss>"
    )
    feed = add(feed_server.route("/hostile.xml", doc.encode()))

    tick()

    first, second = feed.entries.get(guid="x1"), feed.entries.get(guid="x2")
    assert first.link == ""
    assert first.title == "<b>Bold</b> & <script>alert(1)</script>"  # plain text: readers show it escaped
    html = first.summary_html
    for forbidden in ("script", "onclick", "onerror", "javascript:", "iframe"):
        assert forbidden not in html
    assert f'href="{feed_server.url("/rel")}"' in html
    assert 'href="mailto:ed@example.com"' in html
    assert first.published <= timezone.now()  # a future date is clamped
    assert first.published.utcoffset() == timedelta(0)
    assert second.published == second.first_seen  # no date: first seen
    assert "\x00" not in second.title
    assert_unaffected(bystander, feed_server)
