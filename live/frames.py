"""One pre-encoded WebSocket frame per event, written straight to each reader's socket.

Through ASGI, every reader costs a task wake-up, a message dict and a frame encoded for it alone.
But a server's text frame is the same bytes for every socket that negotiated no extension, so the
hub encodes each event once and, for readers served by uvicorn's sans-I/O WebSocket protocol (the
Procfile's `--ws websockets-sansio`), writes those bytes to the transport itself. Anything else
(another server, permessage-deflate, the test communicator) goes through the ASGI `send`.
"""

from collections.abc import Callable

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State

# Bytes a reader may leave unread before it is dropped (about a thousand typical events); it
# reconnects with its cursor and replays, so server memory stays bounded by readers × this.
WRITE_LIMIT = 1024 * 1024

Writer = Callable[[bytes], bool]


def text_frame(text: str) -> bytes:
    """A complete, unmasked, uncompressed text frame, as a server sends it."""
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


def frame_writer(send) -> Writer | None:
    """A function writing a pre-encoded frame to the socket behind this ASGI `send`, or None if
    that socket cannot take shared frames. It returns False when the reader is too slow."""
    protocol = getattr(send, "__self__", None)
    if not isinstance(protocol, WebSocketsSansIOProtocol) or protocol.conn.extensions:
        return None  # permessage-deflate keeps per-socket state: no two frames are alike
    conn, transport = protocol.conn, protocol.transport

    def write(frame: bytes) -> bool:
        if conn.state is not State.OPEN or transport.is_closing():
            return True  # closing: nothing more may be sent; the disconnect unsubscribes it
        if transport.get_write_buffer_size() > WRITE_LIMIT:
            return False
        transport.write(frame)
        return True

    return write
