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
from live.channels import Routes, channels_of
from live.events import as_created, with_prev
from live.frames import Socket, text_frame
from live.replay import latest_encoded, live_sources
from live.subscription import Subscription, catch_up_page, current_seq

log = logging.getLogger(__name__)

newest_changes = database_sync_to_async(latest_encoded, thread_sensitive=False)
sources_of_live_blogs = database_sync_to_async(live_sources, thread_sensitive=False)

# A channel with this many readers is written to in slices, between which the hub goes back to its
# messages: a burst in a 5,000-reader blog never holds up a 50-reader blog's entry. A slice ends
# after SLICE sockets or SLICE_SECONDS, whichever comes first: a message reaches the hub through
# several hops of the event loop (the Redis reply, channels-redis's receive loop, the inbox), and
# every hop waits for one slice, so slices are kept short in time (500 sockets took 7-10 ms on
# loopback; a small blog's entry waited 117 ms at p99 behind a burst, bench/blogs.py).
BIG_CHANNEL = 1000
SLICE = 500
SLICE_SECONDS = 0.001
# How often the hub renews its subscription and looks for a change it was never sent.
HEARTBEAT = 10.0
# Events each web process keeps in memory for readers who reconnect.
RECENT = 5000


class Event:
    """One change as this process delivers it, encoded once per channel (live/channels.py).

    Channels differ in `prev` (the change before this one in each reader's stream); a reader
    replaying from memory who never saw the entry appear is told it as created. Each text, and each
    WebSocket frame of it per compression parameter set, is made on first use, kept, and written as
    is to every socket that wants it: no reader costs a decoding, an encoding or a compression.
    Identical variants share one object (channels with the same `prev` share their text).

    An entry's change (a post too: no feed) lists in `blogs` the blogs it goes to; a blog's own
    change (blogs.models.BlogChange) has `blog` set.
    """

    __slots__ = ("seq", "feed_id", "created", "base", "blog", "blogs", "prevs", "encoded", "size", "hub")

    def __init__(self, hub, seq: int, feed_id, created: int, text: str, prevs: dict, blog=None, blogs=()):
        self.seq, self.feed_id, self.created = seq, feed_id, created
        self.blog, self.blogs, self.prevs = blog, blogs, prevs
        self.hub = hub  # None once the hub forgot it: its later variants are no longer counted
        self.encoded: dict[tuple, str | bytes] = {}
        self.base = text  # without `prev`
        self.size = sys.getsizeof(text)
        if hub is not None:
            hub.grew(self.size)

    def text(self, channel: tuple, created: bool = False) -> str:
        key = (channel, created)
        text = self.encoded.get(key)
        if text is None:
            if created:
                base = self.text(channel)
                text = as_created(base)
                text = base if text == base else text
            else:
                prev = self.prevs.get(channel)
                same = (
                    v
                    for (c, cr, *d), v in self.encoded.items()
                    if not (cr or d) and self.prevs.get(c) == prev
                )
                text = next(same, None) or with_prev(self.base, prev)
            self._keep(key, text)
        return text

    def frame(self, channel: tuple, created: bool = False, deflate: int | None = None) -> bytes:
        text = self.text(channel, created)
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


class Hub:
    def __init__(self):
        self.subscriptions: set[Subscription] = set()
        self.channels: dict[tuple, set[Subscription]] = {}  # channel -> its readers
        # Blog id -> feed -> readers of that feed in that blog: where the whole blog's changes also go.
        self.blog_filters: dict[int, dict[int, int]] = {}
        self.routes = Routes()
        # Big channels' deliveries still to write, in order per channel: [event, readers, next index].
        self.backlog: dict[tuple, deque[list]] = {}
        self.work = asyncio.Event()
        self.ready = asyncio.Event()
        self.last = 0  # every change up to here is handled: delivered, or superseded by a later one
        # The latest events, in order. Every change after `floor` is here (or a later change of
        # the same entry is), so a reader whose cursor is at least `floor` replays from memory.
        # Bounded by count and by bytes (every variant of every event it holds, LIVE_HISTORY_BYTES).
        self.recent: deque[Event] = deque()
        self.memory = 0
        self.max_memory = settings.LIVE_HISTORY_BYTES
        self.floor = 0
        self.inbox: delivery.Inbox | None = None
        self.task: asyncio.Task | None = None

    def subscribe(
        self, after: int | None, feed_id: int | None, socket: Socket | None = None, on_drop=None, blog=None
    ) -> Subscription:
        if self.task is None or self.task.done():
            # A fresh context: the hub outlives the request or socket that happened to start it.
            self.task = asyncio.get_running_loop().create_task(self.run(), context=contextvars.Context())
        subscription = Subscription(self, after, feed_id, socket, on_drop, blog)
        self.subscriptions.add(subscription)
        self.channels.setdefault(subscription.channel, set()).add(subscription)
        if blog is not None and feed_id is not None:
            filters = self.blog_filters.setdefault(blog.pk, {})
            filters[feed_id] = filters.get(feed_id, 0) + 1
        metrics.connected_clients.inc()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self.subscriptions.discard(subscription)
        channel = subscription.channel
        readers = self.channels.get(channel)
        if readers is not None:
            readers.discard(subscription)
            if not readers:
                del self.channels[channel]
        if len(channel) == 3:
            filters = self.blog_filters[channel[1]]
            filters[channel[2]] -= 1
            if not filters[channel[2]]:
                del filters[channel[2]]
                if not filters:
                    del self.blog_filters[channel[1]]

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
                    group.create_task(self.write_backlog())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery failed; readers will resume from their cursors")
                if self.inbox is not None:
                    self.inbox.close()
                self.ready.clear()
                self.backlog.clear()
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
        sources = sorted(await sources_of_live_blogs(), key=lambda source: source[2] or 0)
        for event in self.recent:
            event.hub = None
        self.recent.clear()
        self.memory = 0
        # Every change after `floor` is among the rows, or superseded by one that is.
        self.floor = rows[0][0] - 1 if len(rows) == RECENT else 0
        # What the oldest row follows: nothing, if every change is here; else not known.
        self.routes.clear(everything_known=self.floor == 0)
        # Each source is routed from its addition on, as the rows were made (one removed since is
        # no longer known: a reader replaying from before its removal is told of the removal).
        for row in rows:
            while sources and (sources[0][2] or 0) < row[0]:
                self.routes.route(*sources.pop(0)[:2])
            self.remember(*row)
        for blog_id, feed_id, added in sources:
            if (added or 0) <= latest:
                self.routes.route(blog_id, feed_id)
        self.last = latest

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
                await self.on_event(
                    event["seq"],
                    event["feed"],
                    event.get("created", 0),
                    event["text"],
                    event.get("blog"),
                    event.get("kind", ""),
                )
                if "committed_at" in event:
                    metrics.delivered.observe(max(0.0, time.time() - event["committed_at"]))
                if "arrived" in event:
                    via, at = event["arrived"]
                    metrics.arrival_to_delivery.labels(via).observe(max(0.0, time.time() - at))

    async def on_event(self, seq, feed_id, created, text, blog=None, kind=""):
        if seq <= self.last:
            return  # a copy of something already delivered
        if seq != self.last + 1:
            # Every lower number had committed when this one was sent: fetch the ones we missed.
            await self.catch_up(seq)
            return
        self.deliver(seq, feed_id, created, text, blog, kind)

    async def catch_up(self, upto: int):
        while self.last < upto:
            rows, more = await catch_up_page(self.last, upto)
            for row in rows:
                # The heartbeat and a gap may both be catching up while events keep arriving.
                if row[0] > self.last:
                    self.deliver(*row)
            if not more:
                self.last = upto

    def deliver(self, seq, feed_id, created, text, blog=None, kind=""):
        """Hand a change to the readers of its channels; no other reader is looked at."""
        event = self.remember(seq, feed_id, created, text, blog, kind)
        for channel in channels_of(event, self.blog_filters):
            readers = self.channels.get(channel)
            if not readers:
                continue
            if len(readers) < BIG_CHANNEL and channel not in self.backlog:
                for subscription in list(readers):
                    subscription.offer(event)
            else:  # written in slices by write_backlog, after what is already waiting for this channel
                self.backlog.setdefault(channel, deque()).append([event, list(readers), 0])
                self.work.set()

    async def write_backlog(self):
        """Write big channels' events a slice at a time, each channel in turn, going back to the
        event loop between slices: the next message, and the small channels it goes to, wait for
        one slice at most, not for a big channel's whole burst."""
        while True:
            await self.work.wait()
            self.work.clear()
            while self.backlog:
                deadline = time.perf_counter() + SLICE_SECONDS
                for channel in list(self.backlog):
                    queue = self.backlog[channel]
                    item = queue[0]
                    event, readers, index = item
                    end = min(index + SLICE, len(readers))
                    while index < end:  # the clock is read every 16 sockets
                        batch = readers[index : min(index + 16, end)]
                        for subscription in batch:
                            subscription.offer(event)
                        index += len(batch)
                        if time.perf_counter() > deadline:
                            break
                    item[2] = index
                    if index >= len(readers):
                        queue.popleft()
                        if not queue:
                            del self.backlog[channel]
                await asyncio.sleep(0)

    def remember(self, seq, feed_id, created, text, blog=None, kind="") -> Event:
        """Keep a change, routed as of its number. `blog` with a `kind`: a blog's own change; with
        none, an editor's post in that blog."""
        prevs, blog, blogs = self.routes.change(seq, feed_id, blog, kind, self.blog_filters)
        event = Event(self, seq, feed_id, created, text, prevs, blog, blogs)
        self.last = seq
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
        metrics.history_bytes.set(self.memory)

    def forget(self) -> None:
        event = self.recent.popleft()
        event.hub = None
        self.memory -= event.size
        self.floor = event.seq
        metrics.history_bytes.set(self.memory)


_hubs: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub]" = weakref.WeakKeyDictionary()


def get_hub() -> Hub:
    """The hub of the running event loop: one per server process (tests get one per loop)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = Hub()
    return hub
