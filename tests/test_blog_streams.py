"""A blog's stream: its sources' entries and its own changes, each once, in order, with `prev`."""

import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from blogs.models import Blog, add_source, end_blog, remove_source
from config.asgi import application
from feeds.models import Feed
from feeds.store import store
from live import hub as hub_module
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


async def nothing_more(communicator):
    assert await communicator.receive_nothing(timeout=0.3)


def titles(messages):
    return [m["entry"]["title"] for m in messages]


@pytest.fixture
async def world():
    """Two blogs sharing one feed, each with one feed of its own."""

    def make():
        shared = Feed.objects.create(url="https://example.com/shared.xml", title="Shared")
        only_a = Feed.objects.create(url="https://example.com/a.xml", title="A")
        only_b = Feed.objects.create(url="https://example.com/b.xml", title="B")
        a = Blog.objects.create(slug="a", title="Blog A")
        b = Blog.objects.create(slug="b", title="Blog B")
        for blog, feed in ((a, shared), (a, only_a), (b, shared), (b, only_b)):
            add_source(blog, feed)
        return shared, only_a, only_b, a, b

    return await sync_to_async(make)()


astore = sync_to_async(lambda feed, *items: store(feed, document(*items)))


async def test_each_blogs_readers_get_exactly_their_blogs_entries_with_prev_in_their_stream(world):
    shared, only_a, only_b, a, b = world
    reader_a, reader_b, everyone = await connect("?blog=a"), await connect("?blog=b"), await connect()
    await astore(only_a, item("a1"))
    await astore(shared, item("s1"))
    await astore(only_b, item("b1"))
    await astore(only_a, item("a2"))
    got_a, got_b = await received(reader_a, 3), await received(reader_b, 2)
    assert titles(got_a) == ["Title a1", "Title s1", "Title a2"]
    assert titles(got_b) == ["Title s1", "Title b1"]
    assert titles(await received(everyone, 4)) == ["Title a1", "Title s1", "Title b1", "Title a2"]
    # `prev` is the change before it in that blog's stream, not in the river.
    assert got_a[2]["prev"] == got_a[1]["cursor"]
    assert got_b[1]["prev"] == got_b[0]["cursor"]
    for reader in (reader_a, reader_b):
        await nothing_more(reader)
    # The same, resumed with after= from memory and from the database: the same events, same prevs.
    start = got_a[0]["prev"]
    again = await connect(f"?blog=a&after={start}")
    assert await received(again, 3) == got_a
    hub = get_hub()
    hub.floor = 10**9  # as if memory no longer held them
    from_db = await connect(f"?blog=a&after={start}")
    replayed = await received(from_db, 3)
    assert [(m["cursor"], m["entry"]["title"]) for m in replayed] == [
        (m["cursor"], m["entry"]["title"]) for m in got_a
    ]
    assert [m["prev"] for m in replayed[1:]] == [m["cursor"] for m in got_a[:2]]
    for communicator in (reader_a, reader_b, everyone, again, from_db):
        await communicator.disconnect()


async def test_a_feed_within_a_blog(world):
    shared, only_a, _, a, _ = world
    reader = await connect(f"?blog=a&feed={shared.pk}")
    await astore(only_a, item("a1"))
    await astore(shared, item("s1"))
    [message] = await received(reader, 1)
    assert message["entry"]["title"] == "Title s1"
    await nothing_more(reader)
    await reader.disconnect()


async def test_an_unknown_blog_closes_the_socket():
    communicator = WebsocketCommunicator(application, "/ws/live/?blog=nope", headers=[ORIGIN])
    connected, code = await communicator.connect(timeout=5)
    assert not connected
    assert code == 4404


async def test_a_removed_source_leaves_that_blog_only_and_its_removal_has_a_cursor(world):
    shared, _, _, a, b = world
    reader_a, reader_b = await connect("?blog=a"), await connect("?blog=b")
    await sync_to_async(remove_source)(a, shared)
    [removal] = await received(reader_a, 1)
    assert removal["type"] == "source.removed"
    assert removal["feed"] == {"id": shared.pk, "title": "Shared"}
    await astore(shared, item("s1"))
    [s1] = await received(reader_b, 1)
    assert s1["entry"]["title"] == "Title s1"
    await nothing_more(reader_a)
    # A reader resuming from before the removal is told of it, from memory and from the database.
    for floor in (0, 10**9):
        get_hub().floor = floor
        resumed = await connect(f"?blog=a&after={int(removal['cursor']) - 1}")
        assert [m["type"] for m in await received(resumed, 1)] == ["source.removed"]
        await nothing_more(resumed)
        await resumed.disconnect()
    await reader_a.disconnect()
    await reader_b.disconnect()


async def test_an_added_source_brings_its_recent_entries_in_then_its_new_ones(world):
    _, _, only_b, a, _ = world
    await astore(only_b, item("old1"), item("old2"))
    reader = await connect("?blog=a")
    await sync_to_async(add_source)(a, only_b)
    added, first, second = await received(reader, 3)
    assert added["type"] == "source.added"
    assert [first["type"], second["type"]] == ["entry.created", "entry.created"]
    assert {first["entry"]["title"], second["entry"]["title"]} == {"Title old1", "Title old2"}
    # Each with a cursor of its own in this blog's stream, and its place (position) in the list.
    assert int(added["cursor"]) < int(first["cursor"]) < int(second["cursor"])
    assert int(first["entry"]["position"]) < int(added["cursor"])
    assert second["prev"] == first["cursor"]
    await astore(only_b, item("new"))
    [new] = await received(reader, 1)
    assert new["entry"]["title"] == "Title new"
    await reader.disconnect()


async def test_ending_a_blog_reaches_its_readers_and_its_stream_stops(world):
    shared, only_a, _, a, _ = world
    reader, filtered = await connect("?blog=a"), await connect(f"?blog=a&feed={only_a.pk}")
    await sync_to_async(end_blog)(a)
    [ended] = await received(reader, 1)
    assert ended["type"] == "blog.ended"
    assert ended["blog"]["state"] == "ended"
    assert [m["type"] for m in await received(filtered, 1)] == ["blog.ended"]
    await astore(only_a, item("late"))
    await nothing_more(reader)
    await reader.disconnect()
    await filtered.disconnect()


async def test_routing_touches_only_the_channels_of_the_change(world, monkeypatch):
    shared, only_a, only_b, a, b = world
    reader_a = await connect("?blog=a")
    others = [await connect("?blog=b") for _ in range(5)]
    offered = []
    original = hub_module.Subscription.offer
    monkeypatch.setattr(
        hub_module.Subscription, "offer", lambda self, event: (offered.append(self), original(self, event))
    )
    await astore(only_a, item("a1"))
    await received(reader_a, 1)
    assert len(offered) == 1  # blog b's five readers were not looked at
    for communicator in (reader_a, *others):
        await communicator.disconnect()


async def test_the_api_serves_a_blogs_stream_after_a_cursor_and_its_newest_entries(world):
    shared, only_a, only_b, a, _ = world
    await astore(only_a, item("a1"))
    await astore(only_b, item("b1"))
    await astore(shared, item("s1"))
    client = Client()
    get = sync_to_async(lambda url: client.get(url))
    newest = (await get("/api/entries/?blog=a")).json()
    assert [i["entry"]["title"] for i in newest["items"]] == ["Title s1", "Title a1"]
    assert (await get("/api/entries/?blog=nope")).status_code == 404
    await sync_to_async(remove_source)(a, shared)
    await astore(only_a, item("a2"))
    changes = (await get(f"/api/entries/?blog=a&after={newest['cursor']}")).json()
    kinds = [(i["type"], i["entry"]["title"] if "entry" in i else i["feed"]["id"]) for i in changes["items"]]
    assert kinds == [("source.removed", shared.pk), ("entry.created", "Title a2")]
    blogs = (await get("/api/blogs/")).json()["items"]
    assert [(blog["slug"], blog["newest"]["title"]) for blog in blogs] == [
        ("b", "Title s1"),
        ("a", "Title a2"),
    ]
    detail = (await get("/api/blogs/a/")).json()
    assert [s["id"] for s in detail["sources"]] == [only_a.pk]


async def test_an_editors_post_reaches_its_blogs_readers_only(world):
    from django.contrib.auth.models import User

    from editors.actions import create_post

    shared, only_a, _, a, b = world
    reader_a, reader_b, river = await connect("?blog=a"), await connect("?blog=b"), await connect()
    filtered = await connect(f"?blog=a&feed={only_a.pk}")
    editor = await User.objects.acreate(username="ed", is_staff=True, is_superuser=True)
    await sync_to_async(create_post)(a, editor, title="From the desk", body="Hello", via="test")
    [post] = await received(reader_a, 1)
    assert post["entry"]["kind"] == "post"
    assert post["entry"]["title"] == "From the desk"
    await astore(shared, item("s1"))
    [s1] = await received(reader_a, 1)
    assert s1["prev"] == post["cursor"]
    assert titles(await received(reader_b, 1)) == ["Title s1"]
    assert titles(await received(river, 1)) == ["Title s1"]
    for communicator in (reader_b, river, filtered):
        await nothing_more(communicator)
        await communicator.disconnect()
    # And from the database, for a reader who resumes from before it.
    get_hub().floor = 10**9
    resumed = await connect(f"?blog=a&after={int(post['cursor']) - 1}")
    assert [m["cursor"] for m in await received(resumed, 2)] == [post["cursor"], s1["cursor"]]
    await resumed.disconnect()
    await reader_a.disconnect()


async def test_a_big_channel_is_written_in_slices_in_order_and_small_ones_do_not_wait(world, monkeypatch):
    shared, only_a, only_b, a, b = world
    monkeypatch.setattr(hub_module, "BIG_CHANNEL", 3)
    monkeypatch.setattr(hub_module, "SLICE", 1)
    big = [await connect("?blog=a") for _ in range(3)]
    small = await connect("?blog=b")
    for n in range(4):
        await astore(only_a, item(f"a{n}"))
    await astore(only_b, item("b1"))
    assert titles(await received(small, 1)) == ["Title b1"]
    for reader in big:
        got = await received(reader, 4)
        assert titles(got) == [f"Title a{n}" for n in range(4)]
        assert [m["prev"] for m in got[1:]] == [m["cursor"] for m in got[:3]]
        await nothing_more(reader)
        await reader.disconnect()
    assert not get_hub().backlog
    await small.disconnect()
