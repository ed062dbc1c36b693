"""A real HTTP server on 127.0.0.1 for tests: routes set per test, every request counted."""

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    # handler(request_handler) -> None writes the whole response itself (drip, hang, ...).
    handler: Callable | None = None


class FeedServer:
    def __init__(self):
        self.routes: dict[str, Route] = {}
        self.hits: Counter = Counter()
        self.requests: list[tuple[str, dict]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path
                server.hits[path] += 1
                server.requests.append((path, dict(self.headers)))
                route = server.routes.get(path) or server.routes.get(path.split("?")[0])
                if route is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if route.handler:
                    route.handler(self)
                    return
                self.send_response(route.status)
                headers = {"Content-Length": str(len(route.body)), **route.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(route.body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.01,), daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def route(self, path: str, body: bytes | str = b"", status: int = 200, headers=None, handler=None) -> str:
        if isinstance(body, str):
            body = body.encode()
        self.routes[path] = Route(status=status, body=body, headers=headers or {}, handler=handler)
        return self.url(path)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def rss(*items: tuple[str, str], title: str = "Test feed") -> str:
    """An RSS 2.0 document; items are (guid, title) pairs, newest first."""
    body = "".join(
        f"<item><guid>{guid}</guid><title>{item_title}</title>"
        f"<link>https://example.com/{guid}</link><description>About {item_title}</description></item>"
        for guid, item_title in items
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>{title}</title><link>https://example.com/</link>{body}</channel></rss>"
    )


class GrowingFeed:
    """A feed document that gains items when told to; every response differs (a build date)."""

    def __init__(self, server, path, name):
        self.items: list[tuple[str, str]] = []
        self.name = name
        self.url = server.route(path, handler=self.respond)
        self.appeared: dict[str, float] = {}

    def append(self, count=1):
        for _ in range(count):
            guid = f"{self.name}-{len(self.items) + 1}"
            self.items.insert(0, (guid, f"{self.name} item {len(self.items) + 1}"))
            self.appeared[f"{self.name} item {len(self.items)}"] = time.monotonic()

    def respond(self, handler):
        body = rss(*self.items, title=self.name).replace(
            "<channel>", f"<channel><lastBuildDate>{time.time()}</lastBuildDate>"
        )
        data = body.encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/rss+xml")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
