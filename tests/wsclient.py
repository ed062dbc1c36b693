"""A real WebSocket client that collects every message in a background thread."""

import json
import threading
import time
import zlib

from websockets.sync.client import connect


class LiveClient:
    def __init__(self, base_url: str, query: str = "", origin: str | None = None, compression="deflate"):
        # compression="deflate" offers what browsers offer (permessage-deflate; client_max_window_bits).
        ws_url = base_url.replace("http://", "ws://") + "/ws/live/" + (f"?{query}" if query else "")
        self._connection = connect(
            ws_url, origin=origin or base_url, open_timeout=10, proxy=None, compression=compression
        )
        self.ws = self._connection.__enter__()
        self.messages: list[dict] = []
        self.closed_code: int | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        try:
            for text in self.ws:
                with self._lock:
                    self.messages.append(json.loads(text))
        except Exception:  # noqa: S110 - the close code below says what happened
            pass
        self.closed_code = self.ws.close_code or -1

    def entry_ids(self, kind: str = "entry.created") -> list[int]:
        with self._lock:
            return [m["entry"]["id"] for m in self.messages if m["type"] == kind]

    def titles(self) -> list[str]:
        with self._lock:
            return [m["entry"]["title"] for m in self.messages if m["type"] == "entry.created"]

    def cursor(self) -> str | None:
        with self._lock:
            return self.messages[-1]["cursor"] if self.messages else None

    def wait_for(self, count: int, timeout: float = 15, kind: str = "entry.created") -> list[int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ids = self.entry_ids(kind)
            if len(ids) >= count:
                return ids
            time.sleep(0.05)
        raise AssertionError(f"got {len(self.entry_ids(kind))} of {count} {kind} messages in {timeout} s")

    def close(self):
        self._connection.__exit__(None, None, None)
        self._thread.join(5)


class ResumingClient:
    """Like the page: reconnects with its last cursor whenever the socket closes."""

    def __init__(self, base_url: str, after: str, query: str = ""):
        self.base_url = base_url
        self.cursor = after
        self.query = query  # more parameters, e.g. "blog=election"
        self.messages: list[dict] = []
        self.reconnects = 0
        self.close_codes: list[int | None] = []  # the server's close code of each socket it closed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        ws_url = self.base_url.replace("http://", "ws://") + "/ws/live/"
        while not self._stop.is_set():
            try:
                with connect(
                    f"{ws_url}?after={self.cursor}{'&' + self.query if self.query else ''}",
                    origin=self.base_url,
                    open_timeout=5,
                    proxy=None,
                ) as ws:
                    self._ws = ws
                    for text in ws:
                        message = json.loads(text)
                        self.messages.append(message)
                        self.cursor = message["cursor"]
            except Exception:  # noqa: S110 - closed or refused: try again, as the page does
                pass
            if not self._stop.is_set():
                ws, self._ws = getattr(self, "_ws", None), None
                if ws is not None:
                    self.close_codes.append(ws.close_code)
                self.reconnects += 1
                time.sleep(0.3)

    def disconnect_once(self):
        """Drop the current socket; the client comes back with its cursor."""
        ws = getattr(self, "_ws", None)
        if ws is not None:
            ws.close()

    def created_ids(self) -> list[int]:
        return [m["entry"]["id"] for m in list(self.messages) if m["type"] == "entry.created"]

    def stop(self):
        self._stop.set()
        self.disconnect_once()
        self._thread.join(10)


BROWSER_OFFER = "permessage-deflate; client_max_window_bits"


def raw_connect(base_url: str, query: str = "", offer: str | None = BROWSER_OFFER, headers: str = ""):
    """A bare socket through the handshake (offering what browsers offer, by default, and any
    `headers`, as "Name: value\r\n" lines): the socket and the response's headers, lower-cased.
    Frames are then read with `read_frame`."""
    import socket

    host, port = base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    extensions = f"Sec-WebSocket-Extensions: {offer}\r\n" if offer else ""
    path = "/ws/live/" + (f"?{query}" if query else "")
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: {base_url}\r\n{extensions}{headers}\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    assert b" 101 " in response, response
    return sock, response.decode("latin-1").lower()


def read_frame(sock) -> bytes:
    """One whole frame as the server sent it."""

    def exactly(n):
        data = bytearray()
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            assert chunk, "closed"
            data += chunk
        return bytes(data)

    head = exactly(2)
    size = head[1] & 0x7F
    extra = exactly({126: 2, 127: 8}.get(size, 0))
    if extra:
        size = int.from_bytes(extra, "big")
    return head + extra + exactly(size)


def payload(frame: bytes) -> bytes:
    """A server frame's text, inflated if it is compressed (RFC 7692, no context takeover)."""
    size = frame[1] & 0x7F
    data = frame[2 + {126: 2, 127: 8}.get(size, 0) :]
    if frame[0] & 0x40:
        data = zlib.decompressobj(-15).decompress(data + b"\x00\x00\xff\xff")
    return data
