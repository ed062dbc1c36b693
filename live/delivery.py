"""Delivery of events to every web process: publish() from any thread or process, and one
subscribe() per web process (its hub, live/hub.py), which hands them to its readers.

The transport is chosen once, from the settings: Redis (the "live" channel layer) when workers and
web processes are separate; in memory when everything runs in one process (`make run`, tests).
"""

import asyncio
import atexit
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable

from channels.layers import get_channel_layer
from django.conf import settings
from django.core.signals import setting_changed

from config import redis

log = logging.getLogger(__name__)

# The channel layer alias (CHANNEL_LAYERS) and group of the Redis transport. No "default" layer is
# configured, so consumers get none: events reach a socket only through its process's hub.
LAYER = "live"
GROUP = "live"
# Events per layer message at most, when they have queued up.
BATCH = 100


def publish(
    seq: int,
    feed_id: int | None,
    text: str,
    created: int = 0,
    blog: int | None = None,
    kind: str = "",
    arrived: tuple[str, float] | None = None,
) -> None:
    """Send an encoded event to every web process. Never raises: a failed push must not fail a write.

    Readers that miss it heal from the database: the next event reveals the gap in `seq`, each
    web process compares with the database every few seconds, and a reconnect replays from the
    last cursor.
    """
    # committed_at: this runs on commit; the web process measures delivery latency from it.
    # created: the entry's first change, for readers who replay this event without having seen it.
    message = {
        "type": "live.event",
        "seq": seq,
        "feed": feed_id,
        "created": created,
        "text": text,
        "committed_at": time.time(),
    }
    if blog is not None:
        # With `kind`, a blog's own change (blogs.models.BlogChange); without, an editor's post in
        # it. Either is for that blog's readers only.
        message["blog"], message["kind"] = blog, kind
    if arrived is not None:
        # ("push" or "poll", when its content came in): the web process measures arrival to delivery.
        message["arrived"] = list(arrived)
    try:
        transport().publish(message)
    except Exception:
        log.exception("publishing change %s failed; readers will heal from the database", seq)


async def subscribe() -> "Inbox":
    """This process's subscription to every published event (the hub's)."""
    return await transport().subscribe()


def flush(timeout: float = 5.0) -> None:
    """Wait for this process's queued pushes, e.g. before a worker process takes its next task."""
    if _sender is not None and _sender.pid == os.getpid():
        _sender.flush(timeout)


# A command that stores entries (fetchfeeds) sends their pushes before it exits.
atexit.register(flush)


class Inbox:
    """One process's subscription: `receive()` the next published events (a list, in order);
    `renew()` now and then keeps the subscription alive; `close()` ends it."""

    def __init__(
        self,
        receive: Callable[[], Awaitable[list[dict]]],
        renew: Callable[[], Awaitable[None]],
        close: Callable[[], None],
    ):
        self.receive, self.renew, self.close = receive, renew, close


class MemoryTransport:
    """Everything in one process: a published event goes straight to each subscriber's event loop."""

    name = "memory"

    def __init__(self):
        self.listeners: set[Callable[[list[dict]], None]] = set()
        self.lock = threading.Lock()

    def publish(self, message: dict) -> None:
        with self.lock:
            listeners = list(self.listeners)
        for listener in listeners:
            listener([message])

    def listen(self, listener: Callable[[list[dict]], None]) -> Callable[[], None]:
        """Call `listener` with each published batch, from the publishing thread; returns the undo."""
        with self.lock:
            self.listeners.add(listener)

        def stop():
            with self.lock:
                self.listeners.discard(listener)

        return stop

    async def subscribe(self) -> Inbox:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def deliver(events: list[dict]) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, events)
            except RuntimeError:  # that loop has closed (a test's): nobody is listening there
                stop()

        stop = self.listen(deliver)
        return Inbox(queue.get, _nothing, stop)

    def check_redis(self) -> tuple[bool, str]:
        return True, "not used (in-memory delivery, one process)"

    async def round_trip(self) -> tuple[bool, str]:
        return True, "in memory"


class RedisTransport:
    """Separate processes: pushes go through the "live" channel layer group, on Redis."""

    name = "redis"

    def __init__(self):
        self.layer = get_channel_layer(LAYER)

    def publish(self, message: dict) -> None:
        sender().submit(self.layer, message)

    async def subscribe(self) -> Inbox:
        layer = self.layer
        # The default prefix: channels-redis reads every channel of a process through one receive
        # loop per prefix, so the readiness probe's channel must share it with the hub.
        channel = await layer.new_channel()
        await layer.group_add(GROUP, channel)

        async def receive() -> list[dict]:
            message = await layer.receive(channel)
            if message.get("type") == "live.event":
                return [message]
            if message.get("type") == "live.events":  # what queued up in one sender
                return message["events"]
            return []

        async def renew() -> None:
            # group_expiry must not strand us, and a restarted Redis has forgotten the group.
            await layer.group_add(GROUP, channel)

        return Inbox(receive, renew, lambda: None)

    def check_redis(self) -> tuple[bool, str]:
        redis.client().ping()  # on the process's pool: a probe every few seconds opens nothing new
        return True, "ping"

    async def round_trip(self) -> tuple[bool, str]:
        channel = await self.layer.new_channel()  # same prefix as the hub's
        started = time.perf_counter()
        await self.layer.send(channel, {"type": "ready.ping"})
        await self.layer.receive(channel)
        return True, f"round trip {1000 * (time.perf_counter() - started):.1f} ms"


async def _nothing() -> None:
    return None


_transport: MemoryTransport | RedisTransport | None = None
_transport_lock = threading.Lock()


def transport() -> MemoryTransport | RedisTransport:
    """This process's transport, chosen on first use from CHANNEL_LAYERS."""
    global _transport
    with _transport_lock:
        if _transport is None:
            _transport = RedisTransport() if LAYER in settings.CHANNEL_LAYERS else MemoryTransport()
        return _transport


def _settings_changed(setting, **kwargs):
    global _transport
    if setting == "CHANNEL_LAYERS":  # tests point a process at Redis
        _transport = None


setting_changed.connect(_settings_changed)


class Sender:
    """This process's pushes to Redis, sent in order by one task on an event loop of its own.

    The hook only queues (a few microseconds), so a worker's write never waits on Redis, and the
    layer's connection is reused (async_to_sync would open one per event: 5-10 ms, bench/fanout.py).
    One task sends them one at a time, so each web process receives them in commit order. Events
    that queued up while it was sending leave together as one layer message: a burst costs a few
    round trips to Redis per hundred entries rather than per entry.
    """

    def __init__(self):
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.queue: asyncio.Queue = asyncio.Queue()
        self.pending = 0
        self.idle = threading.Condition()
        threading.Thread(target=self.loop.run_forever, name="livelog-publish", daemon=True).start()
        asyncio.run_coroutine_threadsafe(self.run(), self.loop)

    def submit(self, layer, message: dict) -> None:
        with self.idle:
            self.pending += 1
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (layer, message))

    async def run(self):
        carried = None
        while True:
            layer, message = carried or await self.queue.get()
            carried, batch = None, [message]
            while len(batch) < BATCH and not self.queue.empty():
                item = self.queue.get_nowait()
                if item[0] is not layer:  # settings changed (tests): a batch goes to one layer
                    carried = item
                    break
                batch.append(item[1])
            if len(batch) > 1:
                message = {"type": "live.events", "events": batch}
            try:
                await layer.group_send(GROUP, message)
            except Exception:
                log.exception(
                    "publishing changes %s-%s failed; readers will heal from the database",
                    batch[0]["seq"],
                    batch[-1]["seq"],
                )
            with self.idle:
                self.pending -= len(batch)
                self.idle.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued so far has been sent (or failed)."""
        with self.idle:
            return self.idle.wait_for(lambda: self.pending == 0, timeout)


_sender: Sender | None = None
_sender_lock = threading.Lock()


def sender() -> Sender:
    global _sender
    with _sender_lock:
        if _sender is None or _sender.pid != os.getpid():  # a forked worker process needs its own
            _sender = Sender()
        return _sender
