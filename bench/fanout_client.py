"""Hold many WebSocket readers in one process, at the lowest cost a Python client can manage.

Raw asyncio: a fixed handshake, a frame parser, no JSON decoding. Each text message is reduced to
the bench key `k` found in the entry's title ("fanout k=<k> t=<send time>") and its arrival time
(one clock reading per read from the socket). With `offer` (e.g. browsers' "permessage-deflate;
client_max_window_bits") the handshake offers it, compressed messages are inflated (alone when the
server keeps no context, RFC 7692 server_no_context_takeover; else with the socket's own context),
and the bytes received are counted either way. Driven by fanout.py over stdin/stdout, one
JSON object per line.
"""

import asyncio
import base64
import json
import os
import re
import resource
import sys
import threading
import time
import zlib

KEY = re.compile(rb"fanout k=(\d+) ")
# Replies go to the original stdout; anything else printed goes to stderr.
PROTO = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)

SOCKETS: set = set()
# k -> [readers that got it, duplicates, first arrival, last arrival]
STATS: dict[int, list] = {}
OTHER = {"messages": 0, "bytes": 0}
# Close codes the server sent ("lost" for connections that ended without a close frame).
CLOSES: dict[str, int] = {}
WAITER: dict = {}


def raise_nofile():
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(hard, 65536)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def masked(opcode: int, payload: bytes) -> bytes:
    """A client frame (clients must mask; payloads here are tiny control frames)."""
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + body


# Messages compressed alone, by their bytes: thousands of readers in this one process get the same
# frame (a browser inflates its one message on its own CPU), so each is inflated once here.
INFLATED: dict[bytes, bytes] = {}


def inflate(payload: bytes, context) -> bytes:
    if context is not True:  # the server keeps a context per socket: each socket inflates its own
        return context.decompress(payload + b"\x00\x00\xff\xff")
    text = INFLATED.get(payload)
    if text is None:
        if len(INFLATED) > 1000:
            INFLATED.clear()
        text = INFLATED[payload] = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
    return text


class Reader(asyncio.Protocol):
    __slots__ = (
        "transport",
        "buf",
        "open",
        "ready",
        "closed",
        "seen",
        "frag",
        "request",
        "closing",
        "inflate",
        "rsv1",
    )

    def __init__(self, request: bytes, ready: asyncio.Future, closed: asyncio.Future):
        self.request = request
        self.ready = ready
        self.closed = closed
        self.buf = b""
        self.open = False
        self.seen: set[int] = set()
        self.frag: list[bytes] | None = None
        self.transport = None
        self.closing = False
        self.inflate = None  # None: no compression; True: each message alone; else a decompressobj
        self.rsv1 = False

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc):
        if self in SOCKETS and not self.closing:
            CLOSES["lost"] = CLOSES.get("lost", 0) + 1
        SOCKETS.discard(self)
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed during handshake"))
        if not self.closed.done():
            self.closed.set_result(True)

    def data_received(self, data):
        now = time.time()
        OTHER["bytes"] += len(data)
        if not self.open:
            self.buf += data
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = self.buf[: self.buf.find(b"\r\n")]
            if b" 101 " not in status + b" ":
                self.ready.set_exception(ConnectionError(status.decode(errors="replace")[:60]))
                self.transport.close()
                return
            head = self.buf[:end].lower()
            if b"permessage-deflate" in head:
                self.inflate = True if b"server_no_context_takeover" in head else zlib.decompressobj(-15)
            data, self.buf, self.open = self.buf[end + 4 :], b"", True
            SOCKETS.add(self)
            self.ready.set_result(True)
            if not data:
                return
        buf = self.buf + data if self.buf else data
        pos, size = 0, len(buf)
        while size - pos >= 2:
            b0, length = buf[pos], buf[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if size - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            end = pos + head + length
            if end > size:
                break
            self.frame(b0, buf[pos + head : end], now)
            pos = end
        self.buf = buf[pos:] if pos < size else b""

    def frame(self, b0: int, payload: bytes, now: float):
        opcode, fin = b0 & 0x0F, b0 & 0x80
        if opcode in (1, 2):
            self.rsv1 = bool(b0 & 0x40)
        if opcode in (1, 2) and not fin:
            self.frag = [payload]
            return
        if opcode == 0 and self.frag is not None:
            self.frag.append(payload)
            if not fin:
                return
            payload, self.frag, opcode = b"".join(self.frag), None, 1
        if opcode == 1:
            if self.rsv1:
                payload = inflate(payload, self.inflate)
            self.message(payload, now)
        elif opcode == 9:
            self.transport.write(masked(0xA, payload))
        elif opcode == 8:
            if not self.closing:
                code = str(int.from_bytes(payload[:2], "big")) if len(payload) >= 2 else "none"
                CLOSES[code] = CLOSES.get(code, 0) + 1
            self.closing = True
            SOCKETS.discard(self)
            self.transport.write(masked(0x8, payload[:2]))
            self.transport.close()

    def message(self, payload: bytes, now: float):
        OTHER["messages"] += 1
        found = KEY.search(payload)
        if found is None:
            return
        k = int(found.group(1))
        stat = STATS.get(k)
        if stat is None:
            stat = STATS[k] = [0, 0, now, now]
        if k in self.seen:
            stat[1] += 1
            return
        self.seen.add(k)
        stat[0] += 1
        stat[3] = now
        if WAITER and WAITER["lo"] <= k <= WAITER["hi"]:
            WAITER["last_progress"] = now
            WAITER["remaining"] -= 1
            if WAITER["remaining"] <= 0 and not WAITER["future"].done():
                WAITER["future"].set_result(True)


async def open_one(host: str, port: int, path: str, timeout: float, offer: str | None = None) -> Reader:
    loop = asyncio.get_running_loop()
    key = base64.b64encode(os.urandom(16)).decode()
    extensions = f"Sec-WebSocket-Extensions: {offer}\r\n" if offer else ""
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://{host}:{port}\r\n"
        f"{extensions}\r\n"
    ).encode()
    ready, closed = loop.create_future(), loop.create_future()
    transport, reader = await asyncio.wait_for(
        loop.create_connection(lambda: Reader(request, ready, closed), host, port), timeout
    )
    try:
        await asyncio.wait_for(ready, timeout)
    except BaseException:
        transport.abort()
        raise
    return reader


async def connect(cmd: dict) -> dict:
    started = time.monotonic()
    limit = asyncio.Semaphore(cmd.get("concurrency", 50))
    errors: dict[str, int] = {}

    async def one():
        async with limit:
            try:
                await open_one(
                    cmd["host"],
                    cmd["port"],
                    cmd.get("path", "/ws/live/"),
                    cmd.get("timeout", 30),
                    cmd.get("offer"),
                )
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"[:80]
                errors[reason] = errors.get(reason, 0) + 1

    await asyncio.gather(*(one() for _ in range(cmd["n"])))
    return {
        "open": len(SOCKETS),
        "failed": sum(errors.values()),
        "errors": errors,
        "seconds": time.monotonic() - started,
    }


async def wait(cmd: dict) -> dict:
    """Until every open reader has every k in [lo, hi], or no progress for `idle` s, or `hard` s."""
    lo, hi = cmd["lo"], cmd["hi"]
    readers = len(SOCKETS)
    have = sum(min(STATS[k][0], readers) for k in range(lo, hi + 1) if k in STATS)
    remaining = readers * (hi - lo + 1) - have
    future = asyncio.get_running_loop().create_future()
    WAITER.update(lo=lo, hi=hi, remaining=remaining, future=future, last_progress=time.time())
    if remaining <= 0:
        future.set_result(True)
    deadline = time.monotonic() + cmd["hard"]
    try:
        while not future.done():
            await asyncio.wait([future], timeout=0.05)
            if time.monotonic() > deadline or time.time() - WAITER["last_progress"] > cmd["idle"]:
                break
        return {"complete": future.done(), "remaining": WAITER["remaining"], "open": len(SOCKETS)}
    finally:
        WAITER.clear()


def report(cmd: dict) -> dict:
    keys = range(cmd["lo"], cmd["hi"] + 1)
    return {
        "open": len(SOCKETS),
        "messages": OTHER["messages"],
        "bytes": OTHER["bytes"],
        "compressed": sum(1 for reader in SOCKETS if reader.inflate is not None),
        "closes": CLOSES,
        "stats": {str(k): STATS[k] for k in keys if k in STATS},
    }


def reset() -> dict:
    STATS.clear()
    CLOSES.clear()
    OTHER["messages"] = 0
    OTHER["bytes"] = 0
    for reader in SOCKETS:
        reader.seen.clear()
    return {"open": len(SOCKETS)}


async def close_all(timeout: float = 10) -> dict:
    readers = list(SOCKETS)
    for reader in readers:
        reader.closing = True
        reader.transport.write(masked(0x8, (1000).to_bytes(2, "big")))
    if readers:
        await asyncio.wait([reader.closed for reader in readers], timeout=timeout)
    for reader in readers:
        if not reader.closed.done():
            reader.transport.abort()
    SOCKETS.clear()
    return {"closed": len(readers)}


async def main():
    raise_nofile()
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue = asyncio.Queue()

    def read_stdin():
        for line in sys.stdin:
            loop.call_soon_threadsafe(commands.put_nowait, line)
        loop.call_soon_threadsafe(commands.put_nowait, '{"op": "quit"}')

    threading.Thread(target=read_stdin, daemon=True).start()
    while True:
        cmd = json.loads(await commands.get())
        op = cmd["op"]
        if op == "quit":
            await close_all(timeout=2)
            return
        if op == "connect":
            reply = await connect(cmd)
        elif op == "wait":
            reply = await wait(cmd)
        elif op == "report":
            reply = report(cmd)
        elif op == "reset":
            reply = reset()
        elif op == "close":
            reply = await close_all()
        elif op == "open":
            reply = {"open": len(SOCKETS)}
        else:
            reply = {"error": f"unknown op {op}"}
        PROTO.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
