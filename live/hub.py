"""Per-process fan-out: one subscription per web process (live/delivery.py), many local readers
(live/subscription.py).

A layer channel per socket (the stock Channels pattern) costs a layer message, a thread hop and an
encoding per socket per event, and loses messages when a socket's queue fills. The hub receives each
event once, puts it in order (filling any gap from the database) and encodes it once for everyone.
"""

import asyncio
import contextvars
import logging
import sys
import time
import weakref
from collections import deque

from channels.db import database_sync_to_async
from django.conf import settings

from live import delivery, metrics
from live.events import as_created, with_prev
from live.frames import Socket, text_frame
from live.replay import PAGE, latest_encoded
from live.subscription import Subscription, current_seq, replay_page

log = logging.getLogger(__name__)

newest_changes = database_sync_to_async(latest_encoded, thread_sensitive=False)

# How often the hub renews its subscription and looks for a change it was never sent.
HEARTBEAT = 10.0
# Events each web process keeps in memory for readers who reconnect.
RECENT = 5000


class Event:
    """One change as this process delivers it, encoded once per kind of reader.

    Readers of every feed and readers of one feed differ in `prev` (the change delivered before
    this one, of any feed or of the same feed); a reader replaying from memory who never saw the
    entry appear is told it as created. Each text, and each WebSocket frame of it per compression
    parameter set, is made on first use, kept, and written as is to every socket that wants it:
    no reader costs a decoding, an encoding or a compression. Identical variants share one object.
    """

    __slots__ = ("seq", "feed_id", "created", "prev", "feed_prev", "encoded", "size", "hub")

    def __init__(self, hub, seq: int, feed_id: int, created: int, text: str, prev, feed_prev):
        self.seq, self.feed_id, self.created = seq, feed_id, created
        self.prev, self.feed_prev = prev, feed_prev
        self.hub = hub  # None once the hub forgot it: its later variants are no longer counted
        self.encoded: dict[tuple, str | bytes] = {}
        self.size = 0
        self._keep((False, False), with_prev(text, prev))

    def text(self, feed: bool, created: bool = False) -> str:
        key = (feed, created)
        text = self.encoded.get(key)
        if text is None:
            if created:
                base = self.text(feed)
                text = as_created(base)
                text = base if text == base else text
            else:
                text = self.encoded[(False, False)]
                if self.feed_prev != self.prev:
                    text = with_prev(without_prev(text, self.prev), self.feed_prev)
            self._keep(key, text)
        return text

    def frame(self, feed: bool, created: bool = False, deflate: int | None = None) -> bytes:
        text = self.text(feed, created)
        # The key of the first variant with this very text: equal texts share their frames.
        first = next(k for k, v in self.encoded.items() if v is text)
        key = (*first, deflate)
        frame = self.encoded.get(key)
        if frame is None:
            frame = text_frame(text, deflate)
            self._keep(key, frame)
        return frame

    def _keep(self, key: tuple, value) -> None:
        known = any(v is value for v in self.encoded.values())
        self.encoded[key] = value
        if not known:
            size = sys.getsizeof(value)
            self.size += size
            if self.hub is not None:
                self.hub.grew(size)


def without_prev(text: str, prev: int | None) -> str:
    return text if prev is None else "{" + text[len(f'{{"prev":"{prev}",') :]


class Hub:
    def __init__(self):
        self.subscriptions: set[Subscription] = set()
        self.ready = asyncio.Event()
        self.last = 0  # every change up to here is handled: delivered, or superseded by a later one
        self.delivered = 0  # the last change handed to readers: what the next one follows (`prev`)
        # The latest events, in order. Every change after `floor` is here (or a later change of
        # the same entry is), so a reader whose cursor is at least `floor` replays from memory.
        # Bounded by count and by bytes (every variant of every event it holds, LIVE_HISTORY_BYTES).
        self.recent: deque[Event] = deque()
        self.memory = 0
        self.max_memory = settings.LIVE_HISTORY_BYTES
        self.floor = 0
        self.last_of_feed: dict[int, int] = {}  # since joining: what a feed's next event follows
        self.inbox: delivery.Inbox | None = None
        self.task: asyncio.Task | None = None

    def subscribe(
        self, after: int | None, feed_id: int | None, socket: Socket | None = None, on_drop=None
    ) -> Subscription:
        if self.task is None or self.task.done():
            # A fresh context: the hub outlives the request or socket that happened to start it.
            self.task = asyncio.get_running_loop().create_task(self.run(), context=contextvars.Context())
        subscription = Subscription(self, after, feed_id, socket, on_drop)
        self.subscriptions.add(subscription)
        metrics.connected_clients.inc()
        return subscription

    async def run(self):
        """Receive every event once for this process; if delivery fails, drop readers and rejoin."""
        delay = 0.5
        while True:
            try:
                await self.join()
                delay = 0.5
                async with asyncio.TaskGroup() as group:
                    group.create_task(self.receive_forever())
                    group.create_task(self.heartbeat())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery failed; readers will resume from their cursors")
                if self.inbox is not None:
                    self.inbox.close()
                self.ready.clear()
                for subscription in list(self.subscriptions):
                    subscription.drop()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)

    async def join(self):
        self.inbox = await delivery.subscribe()
        await self.remember_latest()
        self.ready.set()

    async def remember_latest(self):
        """Start from the newest changes in the database, so that readers reconnecting to a new
        process (after a deploy, entries committed meanwhile) replay from memory, not the database."""
        latest = await current_seq()
        rows = await newest_changes(latest, RECENT)
        for event in self.recent:
            event.hub = None
        self.recent.clear()
        self.memory = 0
        self.last_of_feed.clear()
        # Every change after `floor` is among the rows, or superseded by one that is.
        self.floor = rows[0][0] - 1 if len(rows) == RECENT else 0
        # What the oldest row follows: nothing, if every change is here; else not known.
        self.delivered = 0 if self.floor == 0 else None
        for row in rows:
            self.remember(*row)
        self.last = self.delivered = latest

    async def heartbeat(self):
        while True:
            await asyncio.sleep(HEARTBEAT)
            # Comparing with the database heals the loss of a trailing message, which no later
            # one would reveal.
            await self.inbox.renew()
            latest = await current_seq()
            if latest > self.last:
                await self.catch_up(latest)

    async def receive_forever(self):
        while True:
            for event in await self.inbox.receive():
                # "created" is missing from a worker older than this web process: 0 keeps the type.
                await self.on_event(event["seq"], event["feed"], event.get("created", 0), event["text"])
                if "committed_at" in event:
                    metrics.delivered.observe(max(0.0, time.time() - event["committed_at"]))

    async def on_event(self, seq: int, feed_id: int, created: int, text: str):
        if seq <= self.last:
            return  # a copy of something already delivered
        if seq != self.last + 1:
            # Every lower number had committed when this one was sent: fetch the ones we missed.
            await self.catch_up(seq)
            return
        self.deliver(seq, feed_id, created, text)

    async def catch_up(self, upto: int):
        while self.last < upto:
            rows = await replay_page(self.last, upto, None, None)
            for row in rows:
                self.deliver(*row)
            if len(rows) < PAGE:
                self.last = upto

    def deliver(self, seq: int, feed_id: int, created: int, text: str):
        event = self.remember(seq, feed_id, created, text)
        for subscription in list(self.subscriptions):
            subscription.offer(event)

    def remember(self, seq: int, feed_id: int, created: int, text: str) -> Event:
        prev, feed_prev = self.delivered, self.last_of_feed.get(feed_id)
        event = Event(self, seq, feed_id, created, text, prev, feed_prev)
        self.last = seq
        if feed_id is not None:  # a post is not in the river: the river's next change does not follow it
            self.delivered = self.last_of_feed[feed_id] = seq
        self.recent.append(event)
        while len(self.recent) > RECENT:
            self.forget()
        return event

    def grew(self, size: int) -> None:
        """An event it holds took `size` more bytes: forget the oldest until under the bound."""
        self.memory += size
        # The newest stays, whatever its size: the next one to deliver still needs its `prev`.
        while self.memory > self.max_memory and len(self.recent) > 1:
            self.forget()

    def forget(self) -> None:
        event = self.recent.popleft()
        event.hub = None
        self.memory -= event.size
        self.floor = event.seq


_hubs: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub]" = weakref.WeakKeyDictionary()


def get_hub() -> Hub:
    """The hub of the running event loop: one per server process (tests get one per loop)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = Hub()
    return hub
