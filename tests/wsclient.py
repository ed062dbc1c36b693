"""A real WebSocket client that collects every message in a background thread."""

import json
import threading
import time

from websockets.sync.client import connect


class LiveClient:
    def __init__(self, base_url: str, query: str = "", origin: str | None = None):
        ws_url = base_url.replace("http://", "ws://") + "/ws/live/" + (f"?{query}" if query else "")
        self._connection = connect(ws_url, origin=origin or base_url, open_timeout=10, proxy=None)
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
