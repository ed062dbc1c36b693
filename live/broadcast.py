"""Send one event to every live reader, from any thread or process."""

import asyncio
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


_sender: tuple[int, asyncio.AbstractEventLoop] | None = None
_sender_lock = threading.Lock()


def _sender_loop() -> asyncio.AbstractEventLoop:
    """An event loop of this process's own, always running, so the layer's Redis connection is
    reused: async_to_sync would make a new loop, and so a new connection, for every event (5-10 ms
    measured by bench/fanout.py)."""
    global _sender
    with _sender_lock:
        if _sender is None or _sender[0] != os.getpid():  # a forked worker process needs its own
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="livelog-broadcast", daemon=True).start()
            _sender = (os.getpid(), loop)
        return _sender[1]


def broadcast(seq: int, feed_id: int, text: str) -> None:
    """Send an encoded event to the live group. Never raises: a failed push must not fail a write.

    Readers that miss it heal from the database: the next event reveals the gap in `seq`,
    and a reconnect replays from the last cursor.
    """
    # committed_at: this runs on commit; the web process measures delivery latency from it.
    message = {"type": "live.event", "seq": seq, "feed": feed_id, "text": text, "committed_at": time.time()}
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
            future = asyncio.run_coroutine_threadsafe(layer.group_send(GROUP, message), _sender_loop())
            future.result(timeout=5)
    except Exception:
        log.exception("broadcast of change %s failed; readers will heal from the database", seq)


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
