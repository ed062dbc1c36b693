"""Connections of the guarded client: pinned to the checked addresses, every wait bounded by the deadline.

Why a network backend: httpcore asks its backend to connect to (hostname, port). Ours ignores the name
and connects to the address the guard checked, while everything above it (Host header, TLS SNI and
certificate verification against the hostname, connection reuse) works on the hostname as usual.
Connecting to an IP URL instead would need a Host header and an sni_hostname override, and would let
the pool reuse a TLS connection made for one hostname for another hostname on the same address.

Why pools per thread: a pool belongs to one (hostname, checked address), so a kept-alive connection is
only ever reused for that address. Each thread has its own small LRU of pools: no lock is needed, and
evicting (closing) a pool can never cut off a request another thread is making through it. Celery's
prefork workers are single-threaded, so in practice this is one set of pools per worker process.
"""

import ssl
import threading
from collections import OrderedDict

import certifi
import httpcore
import httpx

from feeds.bounds import Deadline

# Pools kept per thread. A pool is keyed by hostname and checked address.
MAX_POOLS = 32
# Below the 5 s idle timeout of Apache and Node, so we never reuse a connection the server is closing.
KEEPALIVE_EXPIRY = 4.0
_NO_DEADLINE = Deadline(float("inf"))


class _PinnedBackend(httpcore.NetworkBackend):
    """Connects to one checked address, whatever the hostname; no wait goes past `deadline`."""

    def __init__(self, host: str, address: str):
        self.host = host
        self.address = address
        self.deadline = _NO_DEADLINE  # set before each request by _Pools.get

    def bound(self, timeout: float | None, error: type[Exception]) -> float:
        remaining = self.deadline.remaining()
        if remaining <= 0:
            raise error("deadline reached")
        return remaining if timeout is None else min(timeout, remaining)

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        if host != self.host:  # cannot happen (one pool per host); refuse rather than resolve the name
            raise httpcore.ConnectError(f"{host} was not checked")
        timeout = self.bound(timeout, httpcore.ConnectTimeout)
        stream = httpcore.SyncBackend().connect_tcp(
            self.address, port, timeout, local_address, socket_options
        )
        return _BoundedStream(stream, self)


class _BoundedStream(httpcore.NetworkStream):
    """A connection whose every wait (TLS handshake, each read and write) ends by the deadline.

    So a server that drips its headers or body, a byte at a time, is cut off at the deadline.
    """

    def __init__(self, stream: httpcore.NetworkStream, backend: _PinnedBackend):
        self.stream = stream
        self.backend = backend

    def read(self, max_bytes, timeout=None):
        return self.stream.read(max_bytes, self.backend.bound(timeout, httpcore.ReadTimeout))

    def write(self, buffer, timeout=None):
        self.stream.write(buffer, self.backend.bound(timeout, httpcore.WriteTimeout))

    def close(self):
        self.stream.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):
        timeout = self.backend.bound(timeout, httpcore.ConnectTimeout)
        return _BoundedStream(self.stream.start_tls(ssl_context, server_hostname, timeout), self.backend)

    def get_extra_info(self, info):
        return self.stream.get_extra_info(info)


class Pools(threading.local):
    """This thread's connection pools, one per (hostname, checked address), least recently used first."""

    def __init__(self):
        # Certificates from certifi, not from environment variables; nothing here reads proxy variables.
        # One context per thread: httpcore sets ALPN on it for every connection.
        self.ssl_context = ssl.create_default_context(cafile=certifi.where())
        self.pools: OrderedDict[tuple[str, str], tuple[httpcore.ConnectionPool, _PinnedBackend]] = (
            OrderedDict()
        )

    def get(self, host: str, address: str, deadline: Deadline) -> httpcore.ConnectionPool:
        key = (host, address)
        if key not in self.pools:
            backend = _PinnedBackend(host, address)
            pool = httpcore.ConnectionPool(
                ssl_context=self.ssl_context, keepalive_expiry=KEEPALIVE_EXPIRY, network_backend=backend
            )
            self.pools[key] = (pool, backend)
            while len(self.pools) > MAX_POOLS:
                _key, (oldest, _backend) = self.pools.popitem(last=False)
                oldest.close()
        self.pools.move_to_end(key)
        pool, backend = self.pools[key]
        backend.deadline = deadline
        return pool

    def close(self) -> None:
        for pool, _backend in self.pools.values():
            pool.close()
        self.pools.clear()


pools = Pools()


def send(
    url: httpx.URL,
    addresses: list[str],
    headers: list[tuple[bytes, bytes]],
    timeouts: dict,
    deadline: Deadline,
    method: bytes = b"GET",
    content: bytes | None = None,
) -> httpcore.Response:
    """Send to the first checked address that accepts a connection; the caller closes the response."""
    host = url.raw_host.decode("ascii")
    request = httpcore.Request(
        method,
        httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path),
        headers=[(b"Host", url.netloc), *headers],
        content=content,
        extensions={"timeout": timeouts},
    )
    # An address we already hold a connection to first (round-robin DNS reorders them), then DNS order.
    ordered = sorted(addresses, key=lambda address: (host, address) not in pools.pools)
    error = None
    for address in ordered:
        try:
            return pools.get(host, address, deadline).handle_request(request)
        except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
            # As socket.create_connection does: an unreachable address (say IPv6) falls back to the next.
            error = exc
    raise error


def describe(exc: Exception) -> str:
    """A short message for a transport error."""
    # httpcore wraps the socket or TLS error as the first argument (its pool drops __cause__).
    cause = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else exc.__cause__
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"TLS certificate error: {cause.verify_message}"
    if isinstance(cause, ssl.SSLError):
        return f"TLS error: {cause.reason or cause}"
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, ConnectionResetError):
        return "connection reset by the server"
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror[:1].lower() + cause.strerror[1:]
    if isinstance(exc, httpcore.ProtocolError):
        return f"HTTP protocol error: {exc}"
    return str(exc) or type(exc).__name__
