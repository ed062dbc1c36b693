"""Send one event to every live reader, from any thread or process."""

import asyncio
import atexit
import logging
import os
import threading
import time

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer

from live.events import GROUP

log = logging.getLogger(__name__)

# Embedded mode: the in-memory layer lives on the server's event loop; threads must hop onto it.
_server_loop: asyncio.AbstractEventLoop | None = None


def register_server_loop(loop: asyncio.AbstractEventLoop) -> None:
    global _server_loop
    _server_loop = loop


class Sender:
    """This process's pushes to Redis, sent in order by one task on an event loop of its own.

    The hook only queues (a few microseconds), so a worker's write never waits on Redis, and the
    layer's connection is reused: async_to_sync would make a new loop, and so a new connection,
    for every event (5-10 ms measured by bench/fanout.py). One task sends them one at a time, so
    each web process receives them in commit order. Events that queued up while it was sending
    (a fetch that stored many entries) leave together as one layer message: a burst costs a few
    round trips to Redis per hundred entries rather than per entry.
    """

    def __init__(self):
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.queue: asyncio.Queue = asyncio.Queue()
        self.pending = 0
        self.idle = threading.Condition()
        threading.Thread(target=self.loop.run_forever, name="livelog-broadcast", daemon=True).start()
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
                    "broadcast of changes %s-%s failed; readers will heal from the database",
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
# Events per layer message at most, when they have queued up.
BATCH = 100
_sender_lock = threading.Lock()


def sender() -> Sender:
    global _sender
    with _sender_lock:
        if _sender is None or _sender.pid != os.getpid():  # a forked worker process needs its own
            _sender = Sender()
        return _sender


def broadcast(seq: int, feed_id: int, text: str, created: int = 0) -> None:
    """Send an encoded event to the live group. Never raises: a failed push must not fail a write.

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
    try:
        layer = get_channel_layer()
        if isinstance(layer, InMemoryChannelLayer) and _server_loop is not None:
            if _in_loop(_server_loop):
                _server_loop.create_task(layer.group_send(GROUP, message))
            else:
                future = asyncio.run_coroutine_threadsafe(layer.group_send(GROUP, message), _server_loop)
                future.result(timeout=5)
        elif isinstance(layer, InMemoryChannelLayer):
            async_to_sync(layer.group_send)(GROUP, message)
        else:
            sender().submit(layer, message)
    except Exception:
        log.exception("broadcast of change %s failed; readers will heal from the database", seq)


def flush(timeout: float = 5.0) -> None:
    """Wait for this process's queued pushes, e.g. before a worker process takes its next task."""
    if _sender is not None and _sender.pid == os.getpid():
        _sender.flush(timeout)


# A command that stores entries (fetchfeeds) sends their pushes before it exits.
atexit.register(flush)


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
