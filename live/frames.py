"""Shared WebSocket frames: each event encoded (and compressed) once, written to every socket.

Through ASGI, every reader costs a task wake-up, a message dict and a frame encoded, and with
permessage-deflate compressed, for it alone. But a server's text frame is the same bytes for every
socket that negotiated the same parameters, provided the server keeps no compression context
between messages (RFC 7692 `server_no_context_takeover`): the hub encodes each event once per
parameter set and, for readers served by uvicorn's sans-I/O WebSocket protocol (the Procfile's
`--ws websockets-sansio`), writes those bytes to the transport itself.

That protocol is private to uvicorn, so this is an optional fast path: if it cannot be imported,
or `LIVE_SHARED_FRAMES` is off, or the socket is served by something else (daphne, the test
communicator), events go through the standard ASGI `send`, which is slower, never wrong.
"""

import asyncio
import logging
import struct
import zlib

from django.conf import settings

log = logging.getLogger(__name__)

# Bytes a reader may leave unread before it is dropped (about a thousand typical events); it
# reconnects with its cursor and replays, so server memory stays bounded by readers × this.
WRITE_LIMIT = 1024 * 1024
# zlib's defaults: one compressor per event and parameter set, never one per socket.
MEM_LEVEL = 8
LEVEL = 6

try:
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    from websockets.exceptions import InvalidHandshake
    from websockets.extensions.permessage_deflate import PerMessageDeflate, ServerPerMessageDeflateFactory
    from websockets.protocol import State
except ImportError as exc:  # uvicorn moved its private module: the process still serves, via ASGI
    WebSocketsSansIOProtocol = None
    UNAVAILABLE = f"uvicorn's sans-I/O WebSocket protocol cannot be imported ({exc})"
else:
    UNAVAILABLE = ""
    # No context kept between messages, either way: the server's frames are alike for every
    # socket, and no socket holds a zlib state (readers send nothing worth compressing).
    DEFLATE = ServerPerMessageDeflateFactory(
        server_no_context_takeover=True,
        client_no_context_takeover=True,
        compress_settings={"memLevel": MEM_LEVEL, "level": LEVEL},
    )


def delivery_path() -> str:
    """`shared_frames` when this process can write shared frames to uvicorn's sockets, else `asgi`."""
    if UNAVAILABLE or not settings.LIVE_SHARED_FRAMES:
        return "asgi"
    return "shared_frames"


def log_delivery_path() -> None:
    if UNAVAILABLE:
        log.warning("%s: live events use the standard ASGI path", UNAVAILABLE)
    elif not settings.LIVE_SHARED_FRAMES:
        log.info("LIVE_SHARED_FRAMES is off: live events use the standard ASGI path")


def text_frame(text: str, window_bits: int | None = None) -> bytes:
    """A complete server text frame: uncompressed, or compressed alone (RFC 7692 without context
    takeover: deflated, the trailing 00 00 ff ff removed, RSV1 set) for a window of `window_bits`."""
    payload = text.encode()
    first = 0x81  # FIN, text
    if window_bits is not None:
        compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -window_bits, MEM_LEVEL)
        payload = (compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
        first |= 0x40  # RSV1: compressed
    size = len(payload)
    if size < 126:
        return bytes((first, size)) + payload
    if size < 65536:
        return struct.pack("!BBH", first, 126, size) + payload
    return struct.pack("!BBQ", first, 127, size) + payload


class Socket:
    """Writes shared frames to one uvicorn socket. `deflate` is its parameter set: the window
    bits of its compressed frames, or None for uncompressed ones."""

    __slots__ = ("protocol", "conn", "transport", "deflate")

    def __init__(self, protocol, deflate: int | None):
        self.protocol, self.conn, self.transport = protocol, protocol.conn, protocol.transport
        self.deflate = deflate

    def handshake_done(self, scope: dict) -> None:
        """Forget what only the opening handshake needed: uvicorn keeps the request and response
        (their headers) and the scope's header list for the socket's whole life, 4 KB of every idle
        reader's 27 (README.md, "Live blogs"). Nothing reads them again: readers send
        nothing, and the hub writes frames."""
        request = self.protocol.request
        if request is not None:
            # websockets' parser keeps the request alive too (a local of its generator): empty it.
            request.headers.clear()
        self.protocol.request = self.protocol.response = None
        headers = scope.get("headers")
        if isinstance(headers, list):
            headers.clear()  # the one list every copy of the scope shares (routing copies the dict)

    def write(self, frame: bytes) -> bool:
        """Write a frame; False when the reader is too slow (it must be dropped)."""
        if self.conn.state is not State.OPEN or self.transport.is_closing():
            return True  # closing: nothing more may be sent; the disconnect unsubscribes it
        if self.transport.get_write_buffer_size() > WRITE_LIMIT:
            return False
        self.transport.write(frame)
        return True

    async def drain(self) -> None:
        """Until the socket's buffer is below uvicorn's high-water mark (or the socket is gone)."""
        if not self.protocol.writable.is_set():
            await self.protocol.writable.wait()
        else:
            await asyncio.sleep(0)  # let the other readers and requests have the loop


def shared_socket(send) -> Socket | None:
    """The fast path's handle on the socket behind this ASGI `send`, or None if that socket cannot
    take shared frames. Call it before accepting: it settles the compression parameters."""
    if delivery_path() != "shared_frames":
        return None
    protocol = getattr(send, "__self__", None)
    if not isinstance(protocol, WebSocketsSansIOProtocol) or protocol.handshake_complete:
        return None
    conn, request = protocol.conn, protocol.request
    if conn.extensions:
        if len(conn.extensions) != 1 or not isinstance(conn.extensions[0], PerMessageDeflate):
            return None  # an extension we do not know how to share
    elif "Sec-WebSocket-Extensions" not in request.headers:
        return Socket(protocol, None)
    # Negotiate permessage-deflate without context takeover, before the handshake response
    # leaves: the response and the socket's codec both follow these terms. (The Procfile leaves
    # uvicorn's own deflate off: it would keep zlib state in every socket; with it on, this
    # replaces what uvicorn negotiated.)
    conn.available_extensions = [DEFLATE]
    try:
        header, extensions = conn.process_extensions(request.headers)
    except InvalidHandshake:
        return Socket(protocol, None) if not conn.extensions else None  # a malformed offer
    conn.extensions = extensions
    if "Sec-WebSocket-Extensions" in protocol.response.headers:
        del protocol.response.headers["Sec-WebSocket-Extensions"]
    if not extensions:
        return Socket(protocol, None)
    protocol.response.headers["Sec-WebSocket-Extensions"] = header
    return Socket(protocol, extensions[0].local_max_window_bits)


log_delivery_path()  # once, as the web process loads its routes
