"""Dispatch and the cost of a fetch: batches, time limits, and work that does not grow with the data."""

import ast
import os
import signal
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from billiard.pool import soft_timeout_sighandler
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from feeds import ingest
from feeds.ingest import TIME_LIMIT_ERROR, fetch_and_store
from feeds.models import Entry, Feed
from feeds.schedule import batches
from feeds.store import store
from feeds.tasks import dispatch_due_feeds, fetch_feed, fetch_feeds
from tests.factories import document, item
from tests.feedserver import rss

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("allow_private")]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def release():
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture
def sent_batches(monkeypatch):
    """The batches a tick sends (they still run, eagerly)."""
    sent = []
    original = fetch_feeds.apply_async

    def record(args=None, kwargs=None, **options):
        sent.append((list(args[0]), options.get("expires")))
        return original(args, kwargs, **options)

    monkeypatch.setattr(fetch_feeds, "apply_async", record)
    return sent


def not_modified(handler):
    handler.send_response(304)
    handler.send_header("ETag", '"same"')
    handler.end_headers()


def test_batches_hold_one_interval_and_at_most_the_batch_size(settings):
    settings.FEEDS_BATCH_SIZE = 20
    due = [(n, 5) for n in range(1000)] + [(n, 60) for n in range(1000, 1030)]

    planned = batches(due)

    assert [len(ids) for ids, _ in planned] == [20] * 50 + [20, 10]
    assert {interval for ids, interval in planned if ids[0] < 1000} == {5}
    assert sorted(feed_id for ids, _ in planned for feed_id in ids) == list(range(1030))


def test_a_small_tick_is_spread_over_several_tasks():
    assert [ids for ids, _ in batches([(n, 5) for n in range(6)])] == [[n] for n in range(6)]
    assert {len(ids) for ids, _ in batches([(n, 5) for n in range(40)])} == {5}


def test_a_tick_fetches_every_due_feed_once_in_batches(feed_server, sent_batches, settings, monkeypatch):
    settings.FEEDS_BATCH_SIZE = 10
    feeds = [
        Feed.objects.create(url=feed_server.route(f"/f{n}.xml", rss((f"g{n}", f"Item {n}"))), interval=5)
        for n in range(60)
    ]
    Feed.objects.create(url=feed_server.route("/later.xml", rss()), next_fetch_at="2999-01-01T00:00Z")
    Feed.objects.create(url=feed_server.route("/off.xml", rss()), enabled=False)

    tick = timezone.now()
    assert dispatch_due_feeds.delay().get() == 60

    assert [len(ids) for ids, _ in sent_batches] == [8] * 7 + [4]
    assert {expires for _, expires in sent_batches} == {5}
    assert all(feed_server.hits[f"/f{n}.xml"] == 1 for n in range(60))
    assert feed_server.hits["/later.xml"] == feed_server.hits["/off.xml"] == 0
    assert Entry.objects.count() == 60
    assert not Feed.objects.filter(pk__in=[f.pk for f in feeds], lease_until__isnull=False).exists()
    # A second later by the clock (however long 60 fetches took on a busy machine), nothing is due:
    # all moved a full interval ahead.
    monkeypatch.setattr(timezone, "now", lambda: tick + timedelta(seconds=1))
    assert dispatch_due_feeds.delay().get() == 0


def test_a_batch_skips_feeds_disabled_or_deleted_since_the_tick(feed_server):
    on = Feed.objects.create(url=feed_server.route("/on.xml", rss(("1", "One"))))
    off = Feed.objects.create(url=feed_server.route("/off.xml", rss(("1", "One"))), enabled=False)

    result = fetch_feeds.delay([on.pk, off.pk, 999_999]).get()

    assert result == "2 skipped, 1 stored"
    assert feed_server.hits["/off.xml"] == 0
    outcomes = ingest.fetch_and_store_many([off.pk, 999_999], enabled_only=True)
    assert {pk: str(outcome) for pk, outcome in outcomes.items()} == {
        off.pk: "skipped: disabled",
        999_999: "skipped: gone",
    }


def test_the_admins_fetch_now_fetches_even_a_feed_that_is_not_due(feed_server, admin_client, static_files):
    feed = Feed.objects.create(
        url=feed_server.route("/now.xml", rss(("1", "One"))), next_fetch_at="2999-01-01T00:00Z"
    )

    admin_client.post("/admin/feeds/feed/", {"action": "fetch_now", "_selected_action": [feed.pk]})

    assert feed_server.hits["/now.xml"] == 1
    assert feed.entries.count() == 1


@pytest.fixture
def soft_time_limit(release):
    """Deliver a Celery soft time limit the way a prefork worker does: SIGUSR1, handled by billiard."""
    previous = signal.signal(signal.SIGUSR1, soft_timeout_sighandler)
    timers = []

    def arm(after: float):
        timer = threading.Timer(after, os.kill, (os.getpid(), signal.SIGUSR1))
        timers.append(timer)
        timer.start()

    yield arm
    for timer in timers:
        timer.cancel()
    signal.signal(signal.SIGUSR1, previous)


def hang_until(release):
    def hang(handler):
        release.wait(30)

    return hang


def test_a_soft_time_limit_in_a_batch_is_recorded_and_releases_the_leases(
    feed_server, release, soft_time_limit, settings
):
    settings.FEEDS_TOTAL_TIMEOUT = 20  # the fetch would go on; the time limit strikes first
    stuck = [
        Feed.objects.create(url=feed_server.route(f"/stuck{n}.xml", handler=hang_until(release)))
        for n in range(2)
    ]
    fine = Feed.objects.create(url=feed_server.route("/fine.xml", rss(("1", "One"))))
    soft_time_limit(0.5)

    result = fetch_feeds.delay([stuck[0].pk, fine.pk, stuck[1].pk]).get()

    assert result == "2 error, 1 stored"
    for feed in stuck:
        feed.refresh_from_db()
        assert (feed.last_error, feed.error_count, feed.lease_until) == (TIME_LIMIT_ERROR, 1, None)
        assert feed.next_fetch_reason == Feed.Why.BACKOFF
    fine.refresh_from_db()
    assert (fine.error_count, fine.lease_until, fine.entries.count()) == (0, None, 1)


def test_a_soft_time_limit_in_a_single_fetch_is_recorded_and_releases_the_lease(
    feed_server, release, soft_time_limit, settings
):
    settings.FEEDS_TOTAL_TIMEOUT = 20
    feed = Feed.objects.create(url=feed_server.route("/stuck.xml", handler=hang_until(release)))
    soft_time_limit(0.5)

    assert fetch_feed.delay(feed.pk).get() == f"error: {TIME_LIMIT_ERROR}"

    feed.refresh_from_db()
    assert (feed.last_error, feed.error_count, feed.lease_until) == (TIME_LIMIT_ERROR, 1, None)
    assert feed.next_fetch_reason == Feed.Why.BACKOFF


def count_queries(call) -> int:
    with CaptureQueriesContext(connection) as queries:
        call()
    return len(queries)


def test_the_queries_of_a_tick_grow_only_with_the_feeds_fetched(feed_server):
    feed_server.route("/same.xml", handler=not_modified)
    few = [Feed.objects.create(url=feed_server.url(f"/same.xml?{n}"), etag='"same"') for n in range(8)]
    few_queries = count_queries(lambda: dispatch_due_feeds.delay().get())
    Feed.objects.filter(pk__in=[f.pk for f in few]).update(enabled=False)
    for n in range(8, 40):
        Feed.objects.create(url=feed_server.url(f"/same.xml?{n}"), etag='"same"')

    many_queries = count_queries(lambda: dispatch_due_feeds.delay().get())

    assert feed_server.hits["/same.xml?0"] == 1
    per_fetch = (many_queries - few_queries) / (32 - 8)
    assert per_fetch <= 3.5, (few_queries, many_queries)  # take the lease, (load it), record and release


def test_the_queries_of_a_fetch_do_not_grow_with_the_entries_stored(feed_server):
    feed_server.route("/same.xml", handler=not_modified)
    small = Feed.objects.create(url=feed_server.url("/same.xml?small"), etag='"same"')
    big = Feed.objects.create(url=feed_server.url("/same.xml?big"), etag='"same"')
    store(small, document(item("only")))
    for start in range(0, 300, 100):
        store(big, document(*[item(f"e{n}") for n in range(start, start + 100)]))

    assert count_queries(lambda: fetch_and_store(small.pk)) == count_queries(lambda: fetch_and_store(big.pk))


# What parses XML in the standard library (and lxml); building XML (Element, tostring) is fine.
XML_PARSERS = {"parse", "iterparse", "fromstring", "fromstringlist", "XML", "XMLParser", "XMLPullParser"}
XML_PARSER_MODULES = ("xml.dom", "xml.sax", "xml.parsers", "lxml")
# Names of those modules that parse nothing: catching a SAX error is not parsing.
NOT_PARSERS = {"SAXException", "SAXParseException"}


def xml_parsing_imports(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [
                alias.name
                for alias in node.names
                if alias.name.startswith(("xml.etree", *XML_PARSER_MODULES))
                and alias.name != "xml.sax.saxutils"
            ]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = {alias.name for alias in node.names}
            if node.module == "xml.sax" and names <= NOT_PARSERS:
                continue
            if node.module.startswith(XML_PARSER_MODULES) and node.module != "xml.sax.saxutils":
                found.append(node.module)
            elif node.module.startswith("xml.etree"):
                names = {alias.name for alias in node.names}
                found += [
                    f"{node.module}.{name}"
                    for name in names & (XML_PARSERS | {"ElementTree", "cElementTree"})
                ]
            elif node.module == "xml":
                found += [
                    f"xml.{alias.name}" for alias in node.names if alias.name in ("dom", "sax", "etree")
                ]
    return found


def test_no_xml_is_parsed_outside_feedparser_except_through_defusedxml():
    # feedparser's parsers run on defusedxml's reader (feeds/xmlsafe.py); anything else must use defusedxml.
    offenders = {
        str(path.relative_to(ROOT)): imports
        for folder in ("feeds", "live", "config", "bench")
        for path in (ROOT / folder).rglob("*.py")
        if (imports := xml_parsing_imports(path.read_text()))
    }
    assert offenders == {}


def test_the_xml_check_sees_parsers():
    assert xml_parsing_imports("from xml.etree.ElementTree import Element, fromstring") == [
        "xml.etree.ElementTree.fromstring"
    ]
    assert xml_parsing_imports("import xml.dom.minidom\nfrom lxml import etree") == [
        "xml.dom.minidom",
        "lxml",
    ]
    assert (
        xml_parsing_imports(
            "from xml.sax.saxutils import escape\nfrom defusedxml import ElementTree\n"
            "from xml.sax import SAXException"
        )
        == []
    )
