"""The push hook: one event per visible change (feeds/changelog.py), sent only after commit, never fatal."""

import asyncio
import json
import os

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from feeds.models import Entry, Feed
from feeds.store import store
from live import delivery
from live.delivery import GROUP, LAYER
from tests.factories import document, item

pytestmark = pytest.mark.django_db


@pytest.fixture
def feed():
    return Feed.objects.create(url="https://example.com/feed.xml", title="Wire")


def test_nothing_is_sent_before_commit(feed, published, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        store(feed, document(item("a")))
        assert published() == []
    assert len(callbacks) == 1
    callbacks[0]()
    [message] = published()
    assert message["seq"] == Entry.objects.get().seq


def test_a_rolled_back_write_sends_nothing(feed, published):
    def write_then_fail():
        with transaction.atomic():
            store(feed, document(item("a")))
            raise RuntimeError

    with pytest.raises(RuntimeError):
        write_then_fail()
    assert published() == []


def test_created_updated_and_deleted_events_carry_the_entry(
    feed, published, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        store(feed, document(item("a", title="First")))
    with django_capture_on_commit_callbacks(execute=True):
        store(feed, document(item("a", title="Second")))
    entry = Entry.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        entry.removed_at = entry.first_seen
        entry.save(update_fields=["removed_at"])
    events = [json.loads(m["text"]) for m in published()]
    assert [e["type"] for e in events] == ["entry.created", "entry.updated", "entry.deleted"]
    assert events[0]["entry"]["title"] == "First"
    assert events[1]["entry"]["title"] == "Second"
    assert events[0]["entry"]["feed"] == {"id": feed.pk, "title": "A feed"}  # as the document names it
    assert set(events[0]["entry"]) == {
        "id",
        "feed",
        "title",
        "link",
        "summary_html",
        "author",
        "published",
        "updated",
        "corrected",
        "position",
        "kind",
        "pinned",
        "pinned_at",
        "key_event",
    }
    assert events[0]["entry"]["kind"] == "feed"
    assert events[0]["entry"]["position"] == events[1]["entry"]["position"] == events[0]["cursor"]
    cursors = [int(e["cursor"]) for e in events]
    assert cursors == sorted(cursors)
    assert len(set(cursors)) == 3


def test_a_failing_transport_never_fails_the_write(feed, monkeypatch, django_capture_on_commit_callbacks):
    class Broken:
        def publish(self, message):
            raise ConnectionError("redis is down")

    monkeypatch.setattr(delivery, "_transport", Broken())
    with django_capture_on_commit_callbacks(execute=True):
        assert store(feed, document(item("a"))) == (1, 0)
    assert Entry.objects.count() == 1


def test_a_save_that_changes_nothing_visible_sends_nothing(
    feed, published, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        store(feed, document(item("a")))
    published()
    entry = Entry.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        entry.update_count = 3
        entry.save(update_fields=["update_count"])
    with django_capture_on_commit_callbacks(execute=True):
        entry.title = entry.title  # an editor saving the form unchanged
        entry.save()
    with django_capture_on_commit_callbacks(execute=True):
        Entry.objects.get().save(update_fields=["title", "removed_at"])
    assert published() == []
    assert Entry.objects.get().seq == entry.seq  # and no number was taken


def test_a_save_that_changes_one_visible_field_sends_it(feed, published, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        store(feed, document(item("a")))
    published()
    entry = Entry.objects.only("id", "feed_id", "seq", "created_seq").get()  # the rest deferred
    with django_capture_on_commit_callbacks(execute=True):
        entry.author = "Editor"
        entry.save(update_fields=["author"])
    [message] = published()
    assert json.loads(message["text"])["entry"]["author"] == "Editor"
    assert message["seq"] == Entry.objects.get().seq == entry.seq


async def received_seqs(layer, channel, count: int) -> tuple[list[int], int]:
    """Change numbers as they arrive, single events and batches alike, and how many messages."""
    seqs, messages = [], 0
    while len(seqs) < count:
        message = await asyncio.wait_for(layer.receive(channel), 10)
        messages += 1
        seqs += (
            [e["seq"] for e in message["events"]] if message["type"] == "live.events" else [message["seq"]]
        )
    return seqs, messages


def test_pushes_through_redis_leave_in_order_and_flush_waits_for_them(redis_url, settings):
    import uuid

    from asgiref.sync import sync_to_async

    from live.delivery import flush, publish

    settings.CHANNEL_LAYERS = {
        LAYER: {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [redis_url], "prefix": f"push-{uuid.uuid4().hex[:8]}", "capacity": 1000},
        }
    }
    layer = get_channel_layer(LAYER)

    def push_all():
        for seq in range(1, 301):
            publish(seq, 1, f"event {seq}")  # queued: the caller does not wait on Redis
        flush()

    async def listen():
        channel = await layer.new_channel()
        await layer.group_add(GROUP, channel)
        await sync_to_async(push_all, thread_sensitive=False)()
        return await received_seqs(layer, channel, 300)

    seqs, messages = async_to_sync(listen)()
    assert seqs == list(range(1, 301))
    assert messages < 300  # what queued up while the sender was busy left together


@pytest.mark.django_db(transaction=True)
def test_a_command_that_stores_entries_sends_their_pushes_before_it_exits(stack, writes, feed_server):
    import subprocess
    import sys

    from asgiref.sync import sync_to_async

    from tests.feedserver import GrowingFeed

    growing = GrowingFeed(feed_server, "/command.xml", "command")
    growing.append(3)
    Feed.objects.create(url=growing.url)
    layer = get_channel_layer(LAYER)  # the stack's Redis (the `writes` fixture points the test at it)

    def fetch_in_a_process():
        env = {**os.environ, **stack.env}
        subprocess.run([sys.executable, "manage.py", "fetchfeeds"], env=env, check=True, timeout=60)  # noqa: S603

    async def listen():
        channel = await layer.new_channel()
        await layer.group_add(GROUP, channel)
        await sync_to_async(fetch_in_a_process, thread_sensitive=False)()
        seqs, _ = await received_seqs(layer, channel, 3)
        return seqs

    assert async_to_sync(listen)() == sorted(Entry.objects.values_list("seq", flat=True))
