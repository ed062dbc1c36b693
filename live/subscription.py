"""One reader's stream (a socket or an SSE response), fed by its process's hub (live/hub.py)."""

import asyncio

from channels.db import database_sync_to_async

from live import metrics
from live.channels import channel_of, matches
from live.events import with_prev
from live.frames import Socket, text_frame
from live.replay import blog_by_slug, encoded_all_changes, encoded_changes, latest_seq

# Not thread-sensitive: these run from the hub's own task and from any reader, never inside a
# request's executor, which would be gone by the time the hub calls again.
replay_page = database_sync_to_async(encoded_changes, thread_sensitive=False)
catch_up_page = database_sync_to_async(encoded_all_changes, thread_sensitive=False)
find_blog = database_sync_to_async(blog_by_slug, thread_sensitive=False)
current_seq = database_sync_to_async(latest_seq, thread_sensitive=False)

# A reader this far behind is dropped; it reconnects with its cursor and replays from the database.
QUEUE_LIMIT = 1000


class Dropped(Exception):
    """The reader fell too far behind, or delivery failed: it must resume from its cursor."""


class Subscription:
    """One reader's stream: what came after its cursor, then live changes; each once, in order.

    Iterating yields (change number, encoded event): the replay, then live events, forever. With a
    shared socket (live/frames.py), `stream_to` writes the replay as frames instead and returns
    once the reader has caught up; from then on the hub writes each live event's shared frame to
    the socket itself, with no queue and no task per reader; `on_drop` is then how the reader
    learns it must go and resume.
    """

    # One per connected reader: no per-instance dict (README.md, "Live blogs").
    __slots__ = (
        "hub", "after", "feed_id", "blog_id", "channel", "socket", "on_drop", "queue", "last", "dropped",
        "live",
    )  # fmt: skip

    def __init__(
        self,
        hub,
        after: int | None,
        feed_id: int | None,
        socket: Socket | None = None,
        on_drop=None,
        blog=None,
    ):
        self.hub = hub
        self.after = after
        self.feed_id = feed_id
        # A blog's id, not the row: an idle reader costs a few bytes more, not a model instance.
        self.blog_id = blog.pk if blog is not None else None
        self.channel = channel_of(self.blog_id, feed_id)  # live/channels.py
        self.socket = socket
        self.on_drop = on_drop
        self.queue: asyncio.Queue | None = asyncio.Queue(QUEUE_LIMIT)
        self.last = 0
        self.dropped = False
        self.live = False  # caught up, written to directly by the hub

    def offer(self, event) -> None:
        """Called by the hub with each event of this reader's channel, in order."""
        if self.dropped:
            return
        if self.live:
            if event.seq > self.last:
                self.last = event.seq
                socket = self.socket
                if not socket.write(event.frame(self.channel, False, socket.deflate)):
                    self.drop()
            return
        try:
            self.queue.put_nowait((event.seq, (event, False)))
        except asyncio.QueueFull:
            self.drop()

    def text(self, item) -> str:
        """An item of the stream: a text read from the database, or (event, told as created)."""
        if isinstance(item, str):
            return item
        event, created = item
        return event.text(self.channel, created)

    def frame(self, item, deflate: int | None) -> bytes:
        if isinstance(item, str):
            return text_frame(item, deflate)  # read from the database for this reader alone
        event, created = item
        return event.frame(self.channel, created, deflate)

    def drop(self) -> None:
        # Memory stays bounded: forget the backlog; the reader comes back with its cursor.
        if self.dropped:
            return
        self.dropped = True
        if self.live:
            self.on_drop()
            return
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait((None, None))  # wakes the reader if it is waiting

    def close(self) -> None:
        if self in self.hub.subscriptions:
            self.hub.unsubscribe(self)
            metrics.connected_clients.dec()

    async def __aiter__(self):
        async for seq, item in self.items():
            yield seq, self.text(item)

    async def stream_to(self, socket: Socket) -> None:
        """Write the replay to the socket as frames; return once caught up (the hub goes on)."""
        async for _, item in self.items():
            if not socket.write(self.frame(item, socket.deflate)):
                raise Dropped
            await socket.drain()

    async def items(self):
        hub = self.hub
        await hub.ready.wait()
        if self.after is not None and self.after >= hub.floor:
            # Everything this reader missed is in the hub's memory: a thousand readers
            # reconnecting after a deploy cost the database nothing. Events, not copies: one
            # the hub forgets meanwhile lives on only until this reader has sent it.
            after = self.after
            missed = [e for e in hub.recent if e.seq > after and matches(e, self.channel)]
            self.last = max(hub.last, after)
            for event in missed:
                # Its creation was superseded before the hub had it: for a reader who never
                # saw this entry appear, it is new.
                yield event.seq, (event, after < event.created < event.seq)
        else:
            async for seq, text in self.replay():
                yield seq, text
        while True:
            if self.socket is not None and self.queue.empty():
                # Caught up, with no await since the check: nothing can slip in between.
                self.live = True
                self.queue = None
                return
            seq, item = await self.queue.get()
            if seq is None:
                raise Dropped
            if seq > self.last:
                self.last = seq
                yield seq, item

    async def replay(self):
        # Subscribed first, then read the database: a change committed in between arrives both
        # ways and the copy is dropped by its number; none falls between the two.
        latest = await current_seq()
        self.last = latest if self.after is None else min(self.after, latest)
        prev = self.last
        while self.last < latest:
            rows, more = await replay_page(self.last, latest, self.feed_id, self.after, self.blog_id)
            for seq, _, _, text, *_ in rows:
                yield seq, with_prev(text, prev)
                prev = seq
            self.last = rows[-1][0] if more else latest
