"""The feed server of the ingest benchmark (bench/ingest_scale.py): many small feeds, cheaply served.

    python bench/ingest_server.py --feeds 1000 --items 5 --changes-per-second 4

Prints its port (chosen by the OS) on the first line of stdout, then serves until killed:
- GET /feed/N.xml: feed N as RSS 2.0, with an ETag and Last-Modified; 304 when If-None-Match matches.
  Every second `--changes-per-second` feeds, picked at random, gain an item (their next fetch is a 200).
- GET /_stats: every feed request so far as JSON [[unix time, feed, status], ...], then forgets them.

asyncio and a hand-written HTTP/1.1 loop with keep-alive, so that serving 200 requests a second costs
little of the CPU that the benchmark measures.
"""

import argparse
import asyncio
import json
import random
import sys
import time
from email.utils import formatdate

IDLE_TIMEOUT = 5.0  # seconds an idle keep-alive connection is kept, as Apache does


class Feeds:
    def __init__(self, count: int, items: int):
        self.items = items
        self.version = [items] * count
        self.changed = [time.time()] * count
        self.requests: list[tuple[float, int, int]] = []
        self._bodies: dict[tuple[int, int], bytes] = {}

    def change(self, n: int) -> None:
        self.version[n] += 1
        self.changed[n] = time.time()

    def body(self, n: int) -> bytes:
        key = (n, self.version[n])
        if key not in self._bodies:
            self._bodies.pop((n, self.version[n] - 1), None)
            items = "".join(
                f"<item><guid isPermaLink='false'>feed{n}-item{k}</guid><title>Feed {n}, item {k}</title>"
                f"<link>https://bench.example/{n}/{k}</link><description>&lt;p&gt;Item {k} of feed {n}, "
                f"with &lt;em&gt;some&lt;/em&gt; markup.&lt;/p&gt;</description>"
                f"<pubDate>{formatdate(self.changed[n] - self.version[n] + k, usegmt=True)}</pubDate></item>"
                for k in range(self.version[n], max(0, self.version[n] - self.items), -1)
            )
            self._bodies[key] = (
                '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
                f"<title>Bench feed {n}</title><link>https://bench.example/{n}/</link>{items}</channel></rss>"
            ).encode()
        return self._bodies[key]

    def respond(self, target: str, headers: dict[str, str]) -> bytes:
        if target == "/_stats":
            body = json.dumps(self.requests).encode()
            self.requests = []
            return response(200, body, "application/json")
        if not (target.startswith("/feed/") and target.endswith(".xml")):
            return response(404, b"", "text/plain")
        try:
            n = int(target[6:-4])
            version = self.version[n]
        except (ValueError, IndexError):
            return response(404, b"", "text/plain")
        etag = f'"{n}-{version}"'
        validators = f"ETag: {etag}\r\nLast-Modified: {formatdate(self.changed[n], usegmt=True)}\r\n"
        if headers.get("if-none-match") == etag:
            self.requests.append((time.time(), n, 304))
            return response(304, b"", "", validators)
        self.requests.append((time.time(), n, 200))
        return response(200, self.body(n), "application/rss+xml; charset=utf-8", validators)


REASONS = {200: "OK", 304: "Not Modified", 404: "Not Found"}


def response(status: int, body: bytes, kind: str, extra: str = "") -> bytes:
    head = f"HTTP/1.1 {status} {REASONS[status]}\r\n{extra}"
    if kind:
        head += f"Content-Type: {kind}\r\n"
    if status != 304:
        head += f"Content-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


async def serve(feeds: Feeds, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IDLE_TIMEOUT)
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if value:
                    headers[name.strip().lower()] = value.strip()
            writer.write(feeds.respond(parts[1] if len(parts) > 1 else "/", headers))
            await writer.drain()
            if headers.get("connection", "").lower() == "close":
                return
    except ConnectionError:
        pass
    finally:
        writer.close()


async def churn(feeds: Feeds, per_second: float) -> None:
    """Feeds gain items at random, `per_second` of them a second on average."""
    credit = 0.0
    while True:
        await asyncio.sleep(0.1)
        credit += per_second / 10
        while credit >= 1:
            feeds.change(random.randrange(len(feeds.version)))
            credit -= 1


async def main(args) -> None:
    feeds = Feeds(args.feeds, args.items)
    server = await asyncio.start_server(lambda r, w: serve(feeds, r, w), "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    churner = asyncio.create_task(churn(feeds, args.changes_per_second))
    try:
        await server.serve_forever()
    finally:
        churner.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--items", type=int, default=5)
    parser.add_argument("--changes-per-second", type=float, default=4.0)
    try:
        asyncio.run(main(parser.parse_args()))
    except KeyboardInterrupt:
        sys.exit(0)
