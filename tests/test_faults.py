"""Faults with real processes, killed by pid: every reader ends with exactly the database's entries.

These tests run their own redis-server on another port and never touch the shared one.
"""

import contextlib
import json
import signal
import time

import pytest

from feeds.ingest import LEASE
from feeds.models import Entry, Feed
from tests.feedserver import GrowingFeed
from tests.procs import wait_until
from tests.wsclient import ResumingClient

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def latest_cursor() -> str:
    entry = Entry.objects.order_by("-seq").first()
    return str(entry.seq if entry else 0)


def assert_clients_match_database(clients, stack, timeout=30):
    stored = set(Entry.objects.values_list("id", flat=True))
    for client in clients:
        try:
            wait_until(lambda c=client: set(c.created_ids()) >= stored, timeout, what="a client to catch up")
        except AssertionError:
            missing = sorted(stored - set(client.created_ids()))
            raise AssertionError(
                f"client missing {len(missing)} of {len(stored)}: {missing[:20]}; "
                f"reconnects={client.reconnects} cursor={client.cursor}\n{stack.logs()}"
            ) from None
    time.sleep(1)
    for client in clients:
        ids = client.created_ids()
        assert len(ids) == len(set(ids)), "an entry was shown twice"
        assert set(ids) == stored


def test_redis_killed_and_restarted_mid_stream_loses_nothing(stack, feed_server, own_redis):
    stack.env["REDIS_URL"] = own_redis.url
    web = stack.pipeline()
    feeds = [GrowingFeed(feed_server, f"/r{n}.xml", f"r{n}") for n in range(3)]
    for feed in feeds:
        Feed.objects.create(url=feed.url, interval=5)
    clients = [ResumingClient(web, latest_cursor()) for _ in range(3)]
    try:
        for second in range(24):
            for feed in feeds:
                feed.append()
            if second == 8:
                own_redis.kill()
            if second == 12:
                own_redis.start()
            time.sleep(1)
        total = 24 * 3
        wait_until(lambda: Entry.objects.count() == total, 60, what=f"{total} stored\n{stack.logs()}")
        assert_clients_match_database(clients, stack)
        assert all(client.reconnects for client in clients), "readers should have been told to resume"
    finally:
        for client in clients:
            client.stop()


def test_a_worker_killed_mid_fetch_is_completed_without_duplicates(stack, feed_server):
    web, _ = stack.web()
    doomed = stack.worker()
    stack.beat()
    feed = GrowingFeed(feed_server, "/slow.xml", "slow")
    feed.append(5)
    slow = {"on": True}
    respond = feed.respond

    def slow_respond(handler):
        if slow["on"]:
            time.sleep(4)  # long enough to kill the worker in the middle
        respond(handler)

    feed_server.routes["/slow.xml"].handler = slow_respond
    Feed.objects.create(url=feed.url, interval=5)
    client = ResumingClient(web, latest_cursor())
    try:
        wait_until(lambda: feed_server.hits["/slow.xml"] >= 1, 20, what="the fetch to start")
        time.sleep(1)
        doomed.kill(signal.SIGKILL)
        assert Entry.objects.count() == 0
        slow["on"] = False
        stack.worker()
        # The killed worker's lease (taken just before the fetch began) must run out, then the next
        # tick dispatches the feed again: up to LEASE + one tick + the fetch after the kill.
        wait_until(
            lambda: Entry.objects.count() == 5,
            LEASE.total_seconds() + 30,
            what=lambda: f"the feed completed\n{stack.logs()}",
        )
        feed.append(2)
        wait_until(lambda: Entry.objects.count() == 7, 20, what="later items")
        assert Entry.objects.values("key").distinct().count() == 7
        assert_clients_match_database([client], stack)
    finally:
        client.stop()


def test_two_beats_fetch_each_feed_at_most_once_per_interval(stack, feed_server):
    stack.web()
    stack.worker()
    stack.beat()
    stack.beat()
    feed = GrowingFeed(feed_server, "/twice.xml", "twice")
    feed.append()
    Feed.objects.create(url=feed.url, interval=5)
    times = []
    respond = feed.respond

    def timed(handler):
        times.append(time.monotonic())
        respond(handler)

    feed_server.routes["/twice.xml"].handler = timed
    for _ in range(5):
        feed.append()
        time.sleep(4)
    wait_until(lambda: Entry.objects.count() == 6, 15, what="the last item")
    assert len(times) >= 4
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    assert min(gaps) > 3.5, f"fetched twice within one interval: {gaps}"
    assert Entry.objects.count() == 6
    assert Entry.objects.values("key").distinct().count() == 6


def test_a_client_disconnected_during_a_500_entry_burst_from_two_workers(stack, feed_server):
    web = stack.pipeline(workers=2)
    feeds = [GrowingFeed(feed_server, f"/burst{n}.xml", f"burst{n}") for n in range(10)]
    for feed in feeds:
        Feed.objects.create(url=feed.url, interval=5)
    steady = ResumingClient(web, latest_cursor())
    flaky = ResumingClient(web, latest_cursor())
    try:
        for feed in feeds:
            feed.append(50)
        wait_until(lambda: Entry.objects.count() >= 50, 20, what="the burst to start")
        flaky.disconnect_once()
        wait_until(lambda: Entry.objects.count() == 500, 60, what=f"500 stored\n{stack.logs()}")
        assert_clients_match_database([steady, flaky], stack)
        assert flaky.reconnects >= 1
    finally:
        steady.stop()
        flaky.stop()


def test_garbage_and_oversized_frames_close_only_that_socket(stack, feed_server):
    from websockets.sync.client import connect

    web = stack.pipeline()
    feed = GrowingFeed(feed_server, "/frames.xml", "frames")
    Feed.objects.create(url=feed.url, interval=5)
    polite = ResumingClient(web, latest_cursor())
    ws_url = web.replace("http://", "ws://") + "/ws/live/"
    codes = []
    for frame in ("x" * 200_000, b"\x00\xff\xfe", "hello"):
        with connect(ws_url, origin=web, proxy=None) as rude:
            rude.send(frame)
            with contextlib.suppress(Exception):  # the close is what we look at
                rude.recv(timeout=5)
            codes.append(rude.close_code)
    assert codes == [1009, 1003, 1008]
    try:
        feed.append()
        wait_until(lambda: len(polite.created_ids()) == 1, 15, what="the polite reader's entry")
        assert polite.reconnects == 0
    finally:
        polite.stop()


def test_a_reader_that_stops_reading_is_dropped_then_resumes_with_nothing_lost(stack, writes):
    import base64
    import os
    import socket

    from websockets.sync.client import connect

    from feeds.store import store
    from tests.factories import document, item

    web, _ = stack.web()
    feed = Feed.objects.create(url="https://example.com/big.xml", title="Big")
    steady = ResumingClient(web, latest_cursor())
    # A reader that stops reading: a small receive window, and a client that buffers one message
    # (and sends no ping, whose pong it could not read).
    raw = socket.create_connection(("127.0.0.1", int(web.rsplit(":", 1)[1])))
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    ws_url = web.replace("http://", "ws://") + "/ws/live/?after=" + latest_cursor()
    seen = []
    try:
        with connect(ws_url, sock=raw, origin=web, max_queue=1, ping_interval=None, proxy=None) as sleeper:
            # 8 MB of events, far more than a reader may leave unread (live/frames.py), even
            # compressed: random text.
            bodies = [f"<p>{base64.b64encode(os.urandom(15_000)).decode()}</p>" for _ in range(400)]
            writes(store, feed, document(*[item(f"big-{n}", summary=b) for n, b in enumerate(bodies)]))
            wait_until(
                lambda: len(steady.created_ids()) == 400, 60, what=f"the steady reader\n{stack.logs()}"
            )
            with contextlib.suppress(Exception):  # it ends with the close
                while True:
                    seen.append(json.loads(sleeper.recv(timeout=10)))
            assert sleeper.close_code == 4008, (sleeper.close_code, len(seen))
        assert 0 < len(seen) < 400
        assert steady.reconnects == 0
        # It comes back with its cursor and gets exactly the rest.
        resumed = ResumingClient(web, seen[-1]["cursor"])
        try:
            wait_until(lambda: len(resumed.created_ids()) == 400 - len(seen), 30, what="the rest")
            ids = [m["entry"]["id"] for m in seen] + resumed.created_ids()
            assert sorted(ids) == sorted(Entry.objects.values_list("id", flat=True))
        finally:
            resumed.stop()
    finally:
        steady.stop()
