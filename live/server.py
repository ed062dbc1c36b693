"""The web process's own bounds, enforced before Django sees a request.

uvicorn counts connections but neither caps them nor times out a request's headers: a few hundred
idle streams used every file descriptor (then the hub could not reach Redis or the database, and
asyncio logged each failed accept), and a client that never finished its headers held its socket
forever. `Protocol` is uvicorn's h11 protocol with both bounds (the Procfile's `--http`);
`ClientLimit` caps what one client address holds open, once proxy headers have named the client.
"""

import functools
import ipaddress
import logging
import resource
from collections import Counter

from django.conf import settings
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

# File descriptors kept free of client sockets: the hub's Redis and database connections, the
# executor threads' connections, log files and lazy imports. Half of it may hold connections
# being refused with a 503; past that they are closed at once.
RESERVED_FDS = 64
# An over-limit client gets this long to send its request and read the 503.
REFUSE_AFTER = 1.0


def _response(status: str, text: str, retry_after: int | None = None) -> bytes:
    body = text.encode()
    retry = f"retry-after: {retry_after}\r\n" if retry_after else ""
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\n{retry}"
        f"connection: close\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body


FULL = _response("503 Service Unavailable", "this server is at its connection limit; retry shortly\n", 5)
TOO_SLOW = _response("408 Request Timeout", "the request's headers took too long\n")


@functools.cache
def connection_limit(backlog: int) -> int:
    """WEB_MAX_CONNECTIONS, but never more than the file descriptors this process may open.

    asyncio accepts up to `backlog` connections in one go before any of them can be refused, so
    that many descriptors stay free too: running out of them fails the hub's own connections.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        # The soft limit is often 1,024 under a far higher hard one: take what we are allowed.
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    room = soft - RESERVED_FDS - backlog
    if room < 1:
        log.warning("%d file descriptors leave no room for a backlog of %d: lower --backlog", soft, backlog)
        room = max(1, soft - RESERVED_FDS)
    limit = min(settings.WEB_MAX_CONNECTIONS, room)
    ClientLimit.ceiling = max(1, limit // 2)  # one address never holds more than half
    return limit


class Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, with a connection limit and a deadline for request headers."""

    def connection_made(self, transport):
        super().connection_made(transport)
        limit = connection_limit(self.config.backlog)
        self.refused = len(self.connections) > limit
        if len(self.connections) > limit + RESERVED_FDS // 2:
            # Far over: no descriptor to spare for an answer. Closed before anything is read.
            log.warning("connection limit reached (%d): closing at once", limit)
            self.header_timer = None
            transport.close()
        elif self.refused:
            log.warning("connection limit reached (%d): answering 503", limit)
            self.header_timer = self.loop.call_later(REFUSE_AFTER, self.give_up, FULL)
        else:
            self.header_timer = self.loop.call_later(settings.WEB_HEADER_TIMEOUT, self.give_up, TOO_SLOW)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            # Read (and drop) the request first: closing with unread data would reset the
            # connection and lose the answer.
            self.give_up(FULL)
            return
        if self.header_timer is None and (self.cycle is None or self.cycle.response_complete):
            # The next request on a kept-alive connection: its headers get the same deadline.
            self.header_timer = self.loop.call_later(settings.WEB_HEADER_TIMEOUT, self.give_up, TOO_SLOW)
        scope = self.scope
        super().data_received(data)
        if self.scope is not scope:  # a request's headers are complete (or it became a WebSocket)
            self.cancel_header_timer()

    def give_up(self, response: bytes) -> None:
        self.cancel_header_timer()
        if not self.transport.is_closing():
            self.transport.write(response)
            self.transport.close()

    def cancel_header_timer(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def connection_lost(self, exc):
        self.cancel_header_timer()
        super().connection_lost(exc)


class ClientLimit:
    """ASGI middleware: at most WEB_MAX_CONNECTIONS_PER_CLIENT requests and sockets open at once
    per client address (after --proxy-headers), so one client cannot take every slot."""

    ceiling: int | None = None  # half the process's connection limit, once Protocol knows it

    def __init__(self, app):
        self.app = app
        self.open: Counter[str] = Counter()

    async def __call__(self, scope, receive, send):
        limit = settings.WEB_MAX_CONNECTIONS_PER_CLIENT
        if limit and self.ceiling:
            limit = min(limit, self.ceiling)
        if scope["type"] not in ("http", "websocket") or not limit:
            return await self.app(scope, receive, send)
        client = address_key(client_address(scope, settings.WEB_PROXY_HOPS))
        if self.open[client] >= limit:
            log.warning("a client reached its limit of %d connections: answering 429", limit)
            return await too_many(scope, send)
        self.open[client] += 1
        try:
            return await self.app(scope, receive, send)
        finally:
            self.open[client] -= 1
            if not self.open[client]:
                del self.open[client]


def client_address(scope, hops: int = 1) -> str:
    """The address the outermost of `hops` proxies saw: the `hops`-th `X-Forwarded-For` entry from
    the right (the leftmost if there are fewer), else the peer.

    The Procfile trusts `X-Forwarded-For` from any peer (Heroku's router connects from addresses
    that are not known in advance), and uvicorn then names the leftmost entry as the client: one
    the client wrote itself, since each proxy appends the address it saw. Each connection could
    claim a new address and pass the cap. The entries our own proxies appended (WEB_PROXY_HOPS:
    Heroku's router alone is 1) are ones the client cannot choose.
    """
    forwarded = b",".join(value for name, value in scope.get("headers", ()) if name == b"x-forwarded-for")
    entries = [entry.strip() for entry in forwarded.decode("latin-1").split(",") if entry.strip()]
    if not entries:
        return (scope.get("client") or ("",))[0]
    host = entries[-min(hops, len(entries))]
    if host.startswith("[") and "]" in host:  # [v6]:port
        return host[1 : host.index("]")]
    return host.split(":")[0] if host.count(":") == 1 else host  # v4:port, or v6


def address_key(address: str) -> str:
    """An IPv4 address, or the /64 of an IPv6 one: a single IPv6 client is given a whole /64."""
    if ":" not in address:
        return address
    try:
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    except ValueError:
        return address


async def too_many(scope, send):
    body = b'{"error": "too many connections from this address; retry shortly"}'
    # Closed after the answer: a refused client keeps no socket open here.
    headers = [(b"content-type", b"application/json"), (b"retry-after", b"10"), (b"connection", b"close")]
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 429, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    elif "websocket.http.response" in scope.get("extensions", {}):
        # Refuse the handshake with a real status, as for HTTP.
        await send({"type": "websocket.http.response.start", "status": 429, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1013})  # "try again later"
