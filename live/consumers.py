import asyncio

from channels.generic.websocket import AsyncWebsocketConsumer

from live.frames import shared_socket
from live.hub import get_hub
from live.query import BadQuery, stream_query
from live.subscription import Dropped, current_seq, find_blog

# Close codes the page understands: it reconnects with its cursor after 4008.
BAD_REQUEST = 4400
NOT_FOUND = 4404  # no blog with that slug
TOO_SLOW = 4008


class LiveConsumer(AsyncWebsocketConsumer):
    """Relays entry events to one reader: what it missed since its cursor, then live changes.

    Events reach this process once, through its hub (live/hub.py), not through a layer channel
    per socket: no default channel layer is configured, so none is attached to the consumer.
    """

    async def __call__(self, scope, receive, send):
        self.asgi_send = send  # the server's own send: live/frames.py finds the socket behind it
        await super().__call__(scope, receive, send)

    async def connect(self):
        try:
            query = stream_query(self.scope["query_string"])
        except BadQuery:
            await self.close(code=BAD_REQUEST)
            return
        after, feed_id = query.after, query.feed
        blog = None
        if query.blog is not None:
            blog = await find_blog(query.blog)
            if blog is None:
                await self.close(code=NOT_FOUND)
                return
        hub = get_hub()
        if after is None:
            # "From now on" means from this connection, not from whenever the hub is ready.
            after = hub.last if hub.ready.is_set() else await current_seq()
        socket = shared_socket(self.asgi_send)  # before accepting: it settles compression
        await self.accept()
        if socket is not None:
            socket.handshake_done(self.scope)
        self.subscription = hub.subscribe(after, feed_id, socket, self.dropped, blog)
        self.pump = asyncio.get_running_loop().create_task(self.forward(socket))

    async def forward(self, socket):
        """Send the replay as shared frames, then leave the live events to the hub; or, without a
        shared socket, send everything through ASGI."""
        try:
            if socket is not None:
                await self.subscription.stream_to(socket)
                self.pump = None  # done: an idle reader keeps no finished task
                return
            async for _, text in self.subscription:
                await self.send(text_data=text)
        except Dropped:
            await self.close(code=TOO_SLOW)
        except OSError:
            pass  # the reader went away mid-send; disconnect() cleans up

    def dropped(self):
        # Called by the hub once the hub writes to this socket itself: too slow, or the layer failed.
        self.pump = asyncio.get_running_loop().create_task(self.close(code=TOO_SLOW))

    async def disconnect(self, code):
        if hasattr(self, "subscription"):
            self.subscription.close()
            if self.pump is not None:
                self.pump.cancel()

    async def receive(self, text_data=None, bytes_data=None):
        # Readers only listen. Anything sent is a broken or hostile client: close just this one.
        await self.close(code=1003 if bytes_data is not None else 1008)
