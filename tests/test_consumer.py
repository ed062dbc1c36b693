"""The socket consumer: replay after a cursor, then live, with no gap and no duplicate."""

import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from config.asgi import application
from feeds.models import Entry, Feed
from feeds.store import store
from live.delivery import publish
from live.events import encode, event
from live.hub import get_hub
from tests.factories import document, item

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]
ORIGIN = (b"origin", b"http://testserver")


async def connect(query=""):
    communicator = WebsocketCommunicator(application, f"/ws/live/{query}", headers=[ORIGIN])
    connected, code = await communicator.connect(timeout=5)
    assert connected, code
    return communicator


async def received(communicator, count):
    return [json.loads(await communicator.receive_from(timeout=5)) for _ in range(count)]


@pytest.fixture
async def feed():
    return await Feed.objects.acreate(url="https://example.com/feed.xml", title="Wire")


def store_sync(feed, *items):
    # Stored outside a test-managed transaction: on_commit runs, as in a worker.
    return store(feed, document(*items))


astore = sync_to_async(store_sync)


async def test_a_socket_without_an_origin_is_refused():
    communicator = WebsocketCommunicator(application, "/ws/live/")
    connected, _ = await communicator.connect(timeout=5)
    assert not connected


async def test_a_socket_from_a_foreign_origin_is_refused():
    for origin in (b"https://evil.example", b"http://testserver.evil.example", b"null"):
        communicator = WebsocketCommunicator(application, "/ws/live/", headers=[(b"origin", origin)])
        connected, _ = await communicator.connect(timeout=5)
        assert not connected, origin


async def test_a_bad_cursor_closes_the_socket():
    communicator = WebsocketCommunicator(application, "/ws/live/?after=banana", headers=[ORIGIN])
    connected, code = await communicator.connect(timeout=5)
    assert not connected or (await communicator.receive_output(timeout=5))["type"] == "websocket.close"


async def test_live_entries_are_relayed_in_order(feed):
    communicator = await connect()
    await astore(feed, item("a"), item("b"))
    messages = await received(communicator, 2)
    assert [m["type"] for m in messages] == ["entry.created", "entry.created"]
    assert [m["entry"]["title"] for m in messages] == ["Title b", "Title a"]
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


async def test_it_replays_what_came_after_the_cursor_then_goes_live(feed):
    await astore(feed, item("a"))
    cursor = (await Entry.objects.aget()).cursor
    await astore(feed, item("b"), item("c"))
    communicator = await connect(f"?after={cursor}")
    replayed = await received(communicator, 2)
    assert [m["entry"]["title"] for m in replayed] == ["Title c", "Title b"]
    await astore(feed, item("d"))
    [live] = await received(communicator, 1)
    assert live["entry"]["title"] == "Title d"
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


async def test_a_replayed_change_to_a_seen_entry_is_an_update(feed):
    await astore(feed, item("a", title="First"))
    cursor = (await Entry.objects.aget()).cursor
    await astore(feed, item("a", title="Second"))
    communicator = await connect(f"?after={cursor}")
    [message] = await received(communicator, 1)
    assert message["type"] == "entry.updated"
    assert message["entry"]["title"] == "Second"
    await communicator.disconnect()


async def test_a_lost_layer_message_is_healed_from_the_database_on_the_next_one(feed):
    communicator = await connect()
    # Store two entries while the push is lost (as when Redis drops a message), then one more.
    from live import signals

    original = signals.publish
    signals.publish = lambda *args: None
    try:
        await astore(feed, item("lost1"), item("lost2"))
    finally:
        signals.publish = original
    await astore(feed, item("next"))
    messages = await received(communicator, 3)
    assert [m["entry"]["title"] for m in messages] == ["Title lost2", "Title lost1", "Title next"]
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


async def test_a_lost_last_message_is_healed_by_the_hubs_comparison_with_the_database(feed, monkeypatch):
    from live import hub as hub_module
    from live import signals

    monkeypatch.setattr(hub_module, "HEARTBEAT", 0.2)
    communicator = await connect()
    # Its push is lost (as when Redis drops a message), and no later change reveals the gap.
    monkeypatch.setattr(signals, "publish", lambda *args: None)
    await astore(feed, item("last"))
    [message] = await received(communicator, 1)
    assert message["entry"]["title"] == "Title last"
    await communicator.disconnect()


async def test_a_duplicate_or_late_layer_message_is_dropped(feed):
    communicator = await connect()
    await astore(feed, item("a"))
    [first] = await received(communicator, 1)
    entry = await Entry.objects.select_related("feed").aget()
    # The same event again, as a redelivery would send it.
    await sync_to_async(publish)(entry.seq, entry.feed_id, encode(event(entry)))
    assert await communicator.receive_nothing(timeout=0.5)
    assert first["cursor"] == entry.cursor
    await communicator.disconnect()


async def test_a_feed_filter_limits_replay_and_live(feed):
    other = await Feed.objects.acreate(url="https://example.com/other.xml", title="Other")
    await astore(feed, item("mine-1"))
    await astore(other, item("theirs-1"))
    communicator = await connect(f"?after=0&feed={feed.pk}")
    [replayed] = await received(communicator, 1)
    assert replayed["entry"]["title"] == "Title mine-1"
    await astore(other, item("theirs-2"))
    await astore(feed, item("mine-2"))
    [live] = await received(communicator, 1)
    assert live["entry"]["title"] == "Title mine-2"
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


async def test_a_client_that_sends_anything_is_closed_and_others_are_not(feed):
    rude = await connect()
    polite = await connect()
    await rude.send_to(bytes_data=b"\x00\xff" * 100)
    assert (await rude.receive_output(timeout=5)) == {"type": "websocket.close", "code": 1003}
    await astore(feed, item("a"))
    [message] = await received(polite, 1)
    assert message["entry"]["title"] == "Title a"
    await polite.disconnect()


async def test_a_reader_that_falls_too_far_behind_is_dropped_with_bounded_memory(monkeypatch):
    from live import hub as hub_module
    from live import subscription as subscription_module

    monkeypatch.setattr(subscription_module, "QUEUE_LIMIT", 3)
    hub = hub_module.Hub()
    hub.ready.set()
    subscription = hub.subscribe(after=None, feed_id=None)
    hub.task.cancel()  # no layer needed: events are handed over directly below
    for seq in range(1, 10):
        hub.deliver(seq, 1, seq, f"event {seq}")
    assert subscription.queue.qsize() == 1  # the backlog is gone, only the "come back" mark is left
    with pytest.raises(subscription_module.Dropped):
        async for _ in subscription:
            pass


async def test_a_reconnecting_reader_is_served_from_memory_without_the_database(feed, monkeypatch):
    first = await connect()
    await astore(feed, item("a"))
    [message] = await received(first, 1)
    await astore(feed, item("b"), item("c"))
    await received(first, 2)
    await first.disconnect()

    reads = counting_database_reads(monkeypatch)
    again = await connect(f"?after={message['cursor']}")
    replayed = await received(again, 2)
    assert [m["entry"]["title"] for m in replayed] == ["Title c", "Title b"]
    assert reads == []
    await again.disconnect()


async def test_each_event_names_the_change_before_it_in_the_readers_stream(feed):
    other = await Feed.objects.acreate(url="https://example.com/other.xml", title="Other")
    await astore(feed, item("a"))
    cursor = (await Entry.objects.aget()).cursor
    await astore(feed, item("b"))
    await astore(other, item("x"))
    everything = await connect(f"?after={cursor}")
    mine = await connect(f"?after={cursor}&feed={feed.pk}")
    b, x = await received(everything, 2)
    [my_b] = await received(mine, 1)
    assert (b["prev"], x["prev"]) == (cursor, b["cursor"])
    assert my_b["prev"] == cursor

    await astore(feed, item("c"))
    await astore(other, item("y"))
    await astore(feed, item("d"))
    c, y, d = await received(everything, 3)
    assert (c["prev"], y["prev"], d["prev"]) == (x["cursor"], c["cursor"], y["cursor"])
    my_c, my_d = await received(mine, 2)
    # A reader of one feed is told the previous change of that feed.
    assert my_c["prev"] == my_b["cursor"]
    assert my_d["prev"] == my_c["cursor"] == c["cursor"]
    await everything.disconnect()
    await mine.disconnect()


def counting_database_reads(monkeypatch) -> list:
    from live import hub as hub_module
    from live import subscription

    reads = []

    def counted(function):
        async def wrapper(*args):
            reads.append(function)
            return await function(*args)

        return wrapper

    # The hub's reads (catching up) and its readers' (replaying).
    for module, name in ((hub_module, "catch_up_page"), (subscription, "replay_page")):
        monkeypatch.setattr(module, name, counted(getattr(module, name)))
        monkeypatch.setattr(module, "current_seq", counted(module.current_seq))
    return reads


async def test_a_new_process_serves_readers_coming_back_after_a_deploy_from_memory(feed, monkeypatch):
    await astore(feed, item("a"))
    cursor = (await Entry.objects.aget()).cursor
    await astore(feed, item("b"), item("c"))  # committed while the readers were away
    first = await connect()  # the new process's hub starts and reads the newest changes once
    await get_hub().ready.wait()
    reads = counting_database_reads(monkeypatch)
    readers = [await connect(f"?after={cursor}") for _ in range(20)]
    for reader in readers:
        replayed = await received(reader, 2)
        assert [m["entry"]["title"] for m in replayed] == ["Title c", "Title b"]
        await reader.disconnect()
    assert reads == []
    await first.disconnect()


async def test_an_entry_changed_before_the_process_saw_it_is_new_to_a_reader_who_never_saw_it(feed):
    await astore(feed, item("a", title="First"))
    seen_first = (await Entry.objects.aget()).cursor
    await astore(feed, item("a", title="Second"))
    first = await connect()  # the hub remembers the entry as of its second change
    newcomer = await connect("?after=0")
    [message] = await received(newcomer, 1)
    assert (message["type"], message["entry"]["title"]) == ("entry.created", "Second")
    assert message["prev"] == "0"  # the hub holds every change: nothing came before this one
    returning = await connect(f"?after={seen_first}")
    [message] = await received(returning, 1)
    assert (message["type"], message["entry"]["title"]) == ("entry.updated", "Second")
    for communicator in (first, newcomer, returning):
        await communicator.disconnect()
