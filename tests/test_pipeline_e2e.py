"""The Procfile's processes on PostgreSQL and Redis, a feed server, and real WebSocket clients."""

import time
from collections import Counter

import pytest

from feeds.ingest import fetch_and_store
from feeds.models import Entry, Feed
from tests.feedserver import GrowingFeed
from tests.procs import wait_until
from tests.wsclient import LiveClient

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_an_appended_item_reaches_every_client_once_within_6_seconds(stack, feed_server, allow_private):
    web, _ = stack.web()
    stack.worker()
    beat = stack.beat()
    feed = GrowingFeed(feed_server, "/news.xml", "news")
    feed.append(2)
    db_feed = Feed.objects.create(url=feed.url, interval=5)
    wait_until(
        lambda: Entry.objects.filter(feed=db_feed).count() == 2, 20, what="first fetch\n" + stack.logs()
    )

    clients = [LiveClient(web) for _ in range(3)]
    try:
        for round_ in range(3):
            feed.append()
            title = feed.items[0][1]
            for client in clients:
                wait_until(
                    lambda c=client, t=title: t in c.titles(), 8, what=f"{title} on a client\n{stack.logs()}"
                )
            latency = time.monotonic() - feed.appeared[title]  # the last client has it now
            assert latency < 6, f"round {round_}: {latency:.1f} s"
        time.sleep(1)  # anything duplicated would have arrived by now
        for client in clients:
            counts = Counter(client.titles())
            assert counts == {f"news item {n}": 1 for n in (3, 4, 5)}, counts
    finally:
        for client in clients:
            client.close()
    assert Entry.objects.filter(feed=db_feed).count() == 5

    # The same code the worker runs, 100 more times over the same items: no new row.
    beat.stop()
    time.sleep(1)  # let a fetch in flight finish
    requests_before = feed_server.hits["/news.xml"]
    outcomes = {str(fetch_and_store(db_feed.pk)) for _ in range(100)}
    assert outcomes == {"0 new, 0 updated"}
    assert feed_server.hits["/news.xml"] == requests_before + 100
    assert Entry.objects.filter(feed=db_feed).count() == 5
    assert Entry.objects.filter(feed=db_feed).values("key").distinct().count() == 5


def test_an_idle_socket_stays_open_for_60_seconds_and_gets_the_next_entry(stack, feed_server):
    web = stack.pipeline()
    feed = GrowingFeed(feed_server, "/idle.xml", "idle")
    feed.append()
    Feed.objects.create(url=feed.url, interval=5)
    wait_until(lambda: Entry.objects.count() == 1, 20, what="first fetch\n" + stack.logs())
    client = LiveClient(web)
    try:
        time.sleep(62)
        assert client.closed_code is None, f"closed with {client.closed_code}\n{stack.logs()}"
        feed.append()
        client.wait_for(1, timeout=10)
        assert client.titles() == ["idle item 2"]
    finally:
        client.close()


def test_a_client_reconnecting_with_after_gets_exactly_what_it_missed_from_two_workers(stack, feed_server):
    web, _ = stack.web()
    workers = [stack.worker(), stack.worker()]
    stack.beat()
    feeds = [GrowingFeed(feed_server, f"/busy-{n}.xml", f"busy{n}") for n in range(6)]
    for feed in feeds:
        feed.append()
        Feed.objects.create(url=feed.url, interval=5)
    wait_until(lambda: Entry.objects.count() == 6, 20, what="first fetch\n" + stack.logs())

    seen: list[int] = []
    cursor = str(Entry.objects.order_by("-seq").first().seq)
    client = LiveClient(web, f"after={cursor}")
    # Items keep appearing on every feed while the client comes and goes; both workers commit.
    deadline = time.monotonic() + 24
    rounds = 0
    while time.monotonic() < deadline:
        for feed in feeds:
            feed.append(2)
        time.sleep(1)
        rounds += 1
        if rounds % 6 == 3:
            seen += client.entry_ids()
            cursor = client.cursor() or cursor
            client.close()
            time.sleep(5)  # miss at least one tick's worth of entries
            client = LiveClient(web, f"after={cursor}")
    total = 6 + 12 * rounds
    wait_until(lambda: Entry.objects.count() == total, 20, what=f"{total} entries stored\n{stack.logs()}")
    try:
        wait_until(lambda: len(seen) + len(client.entry_ids()) >= total - 6, 15, what="all entries delivered")
        time.sleep(1)
        seen += client.entry_ids()
    finally:
        client.close()
    stored = set(
        Entry.objects.exclude(title__in=[f"busy{n} item 1" for n in range(6)]).values_list("id", flat=True)
    )
    assert len(seen) == len(set(seen)), "an entry was delivered twice"
    assert set(seen) == stored
    for worker in workers:
        assert "feeds.tasks.fetch_feeds" in worker.output()
        assert "succeeded" in worker.output()
