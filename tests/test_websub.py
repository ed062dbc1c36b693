"""WebSub end to end: the Procfile's processes on PostgreSQL and Redis, a real hub process
(tests/websubhub.py), a feed server and real WebSocket readers."""

import json
import re
import time
import urllib.request
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from feeds.ingest import fetch_and_store
from feeds.models import Entry, Feed, Subscription
from tests.procs import free_port, wait_until
from tests.websubhub import TestHub
from tests.wsclient import LiveClient

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TOKEN = "websub-test"


@pytest.fixture
def hub():
    hub = TestHub()
    yield hub
    hub.stop()


class PushedFeed:
    """An RSS feed that names a hub and its self URL, and gains items when told to."""

    def __init__(self, server, hub, path="/pushed.xml"):
        self.items: list[tuple[str, str]] = []
        self.hub = hub
        self.url = server.route(path, handler=self.respond)

    def document(self, items=None) -> bytes:
        body = "".join(
            f"<item><guid>{guid}</guid><title>{title}</title><link>https://example.com/{guid}</link></item>"
            for guid, title in (self.items if items is None else items)
        )
        return (
            '<?xml version="1.0" encoding="utf-8"?><rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom">'
            f"<channel><title>Pushed</title><link>https://example.com/</link>"
            f'<atom:link rel="hub" href="{self.hub.url}"/><atom:link rel="self" href="{self.url}"/>'
            f"{body}</channel></rss>"
        ).encode()

    def append(self, guid: str) -> str:
        self.items.insert(0, (guid, f"entry {guid}"))
        return f"entry {guid}"

    def respond(self, handler):
        data = self.document()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/rss+xml")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


def start(stack, **env) -> str:
    """web, worker and beat, with SITE_URL the web process's own URL so that the hub can reach it."""
    port = free_port()
    web = f"http://127.0.0.1:{port}"
    stack.env.update({"SITE_URL": web, "METRICS_TOKEN": TOKEN, **{k: str(v) for k, v in env.items()}})
    stack.web(port)
    stack.worker()
    stack.beat()
    return web


def subscribed(stack, feed_server, hub, first="a") -> tuple[PushedFeed, Feed, Subscription]:
    """A feed that names the hub, fetched once, subscribed and verified."""
    feed = PushedFeed(feed_server, hub)
    feed.append(first)
    row = Feed.objects.create(url=feed.url, interval=5)

    def active():
        return Subscription.objects.filter(feed=row, state=Subscription.State.ACTIVE).first()

    sub = wait_until(active, 40, what=f"a verified subscription\n{hub.state()}\n{stack.logs()}")
    # Our row turns active when we answer the challenge; the hub records the subscriber only once
    # that answer reaches it, a moment later. Deliveries before then would go to no one.
    wait_until(
        lambda: f"/websub/{sub.token}/" in " ".join(hub.state()["subscriptions"]), 10, what=str(hub.state())
    )
    row.refresh_from_db()
    assert row.hubs == [hub.url]
    assert row.topic == feed.url
    assert row.pushed_until == sub.lease_expires_at
    return feed, row, sub


def scrape(web: str) -> str:
    request = urllib.request.Request(web + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return response.read().decode()


def metric(text: str, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_a_feed_that_names_a_hub_is_subscribed_and_its_pushes_reach_readers_at_once(stack, feed_server, hub):
    web = start(stack)
    feed, row, sub = subscribed(stack, feed_server, hub)
    # The hub records its verification once our answer is in: a moment after the row changed.
    verification = wait_until(lambda: hub.state()["verifications"], 5)[0]
    assert verification["confirmed"]
    assert verification["callback"] == f"{web}/websub/{sub.token}/"
    with urllib.request.urlopen(web + "/api/feeds/", timeout=10) as response:  # noqa: S310
        listed = json.loads(response.read())["items"][0]
    assert (listed["hubs"], listed["topic"]) == ([hub.url], feed.url)

    # The first poll after the subscription moves the feed to its pushed interval (60 s): from then on,
    # no poll can store an entry before its push does.
    pushed = timedelta(seconds=30)
    wait_until(
        lambda: Feed.objects.get(pk=row.pk).next_fetch_at - timezone.now() > pushed, 15, what="60 s polls"
    )
    readers = [LiveClient(web) for _ in range(3)]
    try:
        for n in range(3):
            title = feed.append(f"p{n}")
            published = time.monotonic()
            hub.publish(feed.url)
            for reader in readers:
                wait_until(lambda r=reader, t=title: t in r.titles(), 10, what=f"{title}\n{stack.logs()}")
            # Polled every 60 s now: only the push can have been this quick.
            assert time.monotonic() - published < 3
        time.sleep(1)
        for reader in readers:
            assert Counter(reader.titles()) == {"entry p0": 1, "entry p1": 1, "entry p2": 1}
    finally:
        for reader in readers:
            reader.close()
    assert [d["status"] for d in hub.state()["deliveries"]] == [204, 204, 204]
    sub.refresh_from_db()
    assert sub.push_count == 3
    text = scrape(web)
    assert metric(text, 'livelog_pushes_total{outcome="stored"}') == 3
    assert metric(text, "livelog_entries_pushed_total") == 3
    assert metric(text, 'livelog_push_leases{state="active"}') == 1
    assert metric(text, "livelog_push_stored_seconds_count") == 3
    # Push to delivery, measured by the web process that handed the entries to its readers.
    assert metric(text, 'livelog_entry_arrival_to_delivery_seconds_count{via="push"}') == 3
    assert metric(text, 'livelog_entry_arrival_to_delivery_seconds_bucket{le="5.0",via="push"}') == 3


def test_a_short_lease_is_renewed_before_it_runs_out(stack, feed_server, hub):
    hub.control("config", max_lease=20)
    start(stack)
    feed, row, sub = subscribed(stack, feed_server, hub)
    assert sub.lease_seconds == 20
    first_expiry = sub.lease_expires_at

    def renewed():
        mine = [v for v in hub.state()["verifications"] if v["callback"].endswith(f"/{sub.token}/")]
        return len(mine) >= 2 and all(v["confirmed"] for v in mine)

    wait_until(renewed, 20, what=f"a renewal\n{hub.state()}\n{stack.logs()}")
    sub.refresh_from_db()
    assert sub.state == Subscription.State.ACTIVE
    assert sub.lease_expires_at > first_expiry
    assert timezone.now() < first_expiry  # renewed before the first lease ran out
    # Past the first lease, the same callback still gets the hub's pushes.
    time.sleep(max(0.0, (first_expiry - timezone.now()).total_seconds()) + 1)
    title = feed.append("late")
    hub.publish(feed.url)
    wait_until(lambda: Entry.objects.filter(title=title).exists(), 10, what=f"the push\n{stack.logs()}")
    assert Subscription.objects.filter(feed=row).count() == 1


def test_forged_misdirected_and_oversized_content_is_refused_recorded_and_never_stored(
    stack, feed_server, hub
):
    web = start(stack, FEEDS_MAX_BYTES=100_000)
    feed, row, sub = subscribed(stack, feed_server, hub)
    callback = f"{web}/websub/{sub.token}/"
    stored = Entry.objects.count()
    sneaky = feed.document([("forged", "forged entry")]).decode()

    # A forged signature, and a valid one made with an algorithm outside the four.
    assert hub.control("deliver", topic=feed.url, body=sneaky, signature="sha256=" + "ab" * 32)[
        "statuses"
    ] == [202]
    assert hub.control("deliver", topic=feed.url, body=sneaky, algorithm="md5")["statuses"] == [202]
    # A body over the cap: refused before it is read.
    assert hub.control("deliver", topic=feed.url, size=100_001)["statuses"] == [413]
    # A verification for a topic nobody asked for.
    never = hub.control("challenge", callback=callback, topic="http://127.0.0.1:9/never.xml")
    assert never["status"] == 404
    assert never["challenge"] not in never["body"]
    sub.refresh_from_db()
    assert sub.refused_count == 2
    assert "bad signature" in sub.last_error or "bad algorithm" in sub.last_error
    assert sub.state == Subscription.State.ACTIVE

    # The feed is disabled: unsubscribed (the hub verifies it), and its old callback is gone for good.
    Feed.objects.filter(pk=row.pk).update(enabled=False)
    wait_until(
        lambda: Subscription.objects.filter(pk=sub.pk, state=Subscription.State.UNSUBSCRIBED).exists(),
        30,
        what=f"the unsubscription\n{hub.state()}\n{stack.logs()}",
    )
    replay = hub.control("deliver", topic=feed.url, body=sneaky, callback=callback, secret=sub.secret)
    assert replay["statuses"] == [410]

    assert Entry.objects.count() == stored
    assert not Entry.objects.filter(title="forged entry").exists()
    text = scrape(web)
    for outcome in ("bad_signature", "bad_algorithm", "too_large", "gone"):
        assert metric(text, f'livelog_pushes_total{{outcome="{outcome}"}}') == 1, outcome
    assert metric(text, 'livelog_pushes_total{outcome="stored"}') == 0
    assert metric(text, 'livelog_push_verifications_total{outcome="refused"}') == 1
    assert metric(text, 'livelog_push_leases{state="unsubscribed"}') == 1


def test_an_entry_both_pushed_and_polled_is_stored_and_delivered_once(
    stack, feed_server, hub, writes, allow_private
):
    web = start(stack)
    feed, row, sub = subscribed(stack, feed_server, hub)
    reader = LiveClient(web)
    try:
        title = feed.append("both")
        hub.publish(feed.url)
        wait_until(lambda: title in reader.titles(), 10, what=f"the push\n{stack.logs()}")
        # The same document polled right after (the worker's own code), and pushed once more.
        assert str(writes(fetch_and_store, row.pk)) == "0 new, 0 updated"
        hub.publish(feed.url)
        wait_until(lambda: len(hub.state()["deliveries"]) == 2, 10, what="the second push")
        # The other way round: a poll first, then the push.
        second = feed.append("polled")
        assert str(writes(fetch_and_store, row.pk)) == "1 new, 0 updated"
        hub.publish(feed.url)
        wait_until(lambda: len(hub.state()["deliveries"]) == 3, 10, what="the third push")
        wait_until(lambda: second in reader.titles(), 10, what=f"the poll\n{stack.logs()}")
        time.sleep(1)
        assert Counter(reader.titles()) == {title: 1, second: 1}
    finally:
        reader.close()
    assert Entry.objects.filter(title=title).count() == 1
    assert Entry.objects.filter(title=second).count() == 1


def test_a_hub_that_stops_pushing_is_caught_by_polling_and_demoted(stack, feed_server, hub):
    web = start(stack, FEEDS_PUSHED_INTERVAL=10)
    feed, row, sub = subscribed(stack, feed_server, hub)
    # Polled every 10 s (FEEDS_PUSHED_INTERVAL), not every 5, while the hub pushes.
    wait_until(lambda: Feed.objects.get(pk=row.pk).next_fetch_at - timezone.now() > timedelta(seconds=6), 15)

    hub.control("config", pushing=False)
    reader = LiveClient(web)
    try:
        title = feed.append("silent")
        hub.publish(feed.url)  # the hub takes the ping and pushes nothing
        wait_until(lambda: title in reader.titles(), 20, what=f"the poll\n{stack.logs()}")
    finally:
        reader.close()
    assert hub.state()["deliveries"] == []
    # Counted right after the poll's store (the reader may be a few milliseconds quicker).
    wait_until(lambda: Subscription.objects.get(pk=sub.pk).demoted_at is not None, 5, what="the demotion")
    sub.refresh_from_db()
    assert sub.missed_count == 1
    assert sub.demoted_at is not None
    row.refresh_from_db()
    assert row.pushed_until is None  # back to its own 5-second interval
    # The miss is counted in Redis right after the demotion is written: wait for it, then read it exactly.
    missed = f'livelog_push_missed_total{{hub="{hub.url}"}}'

    def counted():
        text = scrape(web)
        return text if metric(text, missed) >= 1 else None

    text = wait_until(counted, 5, what="the miss counted")
    assert metric(text, missed) == 1
    assert metric(text, 'livelog_push_leases{state="demoted"}') == 1
    # The poll that caught it, measured from its response to the reader. Counted when the worker's
    # message reaches the web process, which can come after the heartbeat's catch-up showed the entry.
    poll_count = 'livelog_entry_arrival_to_delivery_seconds_count{via="poll"}'
    wait_until(lambda: metric(scrape(web), poll_count) >= 1, 10, what="the poll's arrival-to-delivery count")

    # The hub pushes again, ahead of the poll: it is trusted again. Right after a poll (the next is
    # 5 s away), so that the poll cannot store the entry first and leave the push nothing new.
    hub.control("config", pushing=True)
    polls = feed_server.hits["/pushed.xml"]
    wait_until(lambda: feed_server.hits["/pushed.xml"] > polls, 10, what="a poll")
    feed.append("back")
    hub.publish(feed.url)
    wait_until(lambda: Feed.objects.get(pk=row.pk).pushed_until is not None, 10, what="promotion")
    sub.refresh_from_db()
    assert sub.demoted_at is None
