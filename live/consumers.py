from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from live.events import GROUP, parse_cursor
from live.replay import PAGE, encoded_changes_after, latest_seq

replay_page = database_sync_to_async(encoded_changes_after)
current_seq = database_sync_to_async(latest_seq)


class LiveConsumer(AsyncWebsocketConsumer):
    """Relays entry events to one reader, after replaying what it missed.

    `self.last` is the newest change this reader is known to have. Live events arrive in any
    order across workers; one that is not exactly next reveals a gap, which is filled from
    the database (every lower change number has committed once a higher one is sent).
    """

    async def connect(self):
        query = parse_qs(self.scope["query_string"].decode())
        try:
            after = parse_cursor(query.get("after", [None])[0])
            feed = query.get("feed", [None])[0]
            self.feed_id = int(feed) if feed else None
        except ValueError:
            await self.close(code=4400)
            return
        # Join before reading the database, so nothing committed in between is lost;
        # whatever arrives twice is dropped by its change number.
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()
        latest = await current_seq()
        if after is None or after >= latest:
            self.last = latest
        else:
            self.last = after
            await self.catch_up(upto=latest)

    async def disconnect(self, code):
        await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        # Readers only listen; anything they send is ignored.
        pass

    async def catch_up(self, upto: int):
        while True:
            texts, last = await replay_page(self.last, upto, self.feed_id)
            for text in texts:
                await self.send(text_data=text)
            self.last = last
            if len(texts) < PAGE:
                break
        self.last = max(self.last, upto)

    async def live_event(self, message):
        seq = message["seq"]
        if seq <= self.last:
            return  # already sent, by the replay or before
        if seq != self.last + 1:
            await self.catch_up(upto=seq)
            return
        self.last = seq
        if self.feed_id is None or message["feed"] == self.feed_id:
            await self.send(text_data=message["text"])
