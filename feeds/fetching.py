"""Bytes from a URL, safely: the one HTTP client that every outbound request of the app goes through.

- The guard (`check_url`) allows http and https only, resolves the host once and refuses it if any of its
  addresses is not public (unless FEEDS_ALLOW_PRIVATE_NETWORKS is on).
- The request then connects to the address that was checked, never to a second lookup of the name, so DNS
  rebinding cannot slip past the guard; TLS still sends the hostname (SNI) and verifies the certificate
  for it.
- Redirects are followed by hand, each hop checked by the guard again.
- One deadline bounds every connect, handshake and read of a fetch, redirects included; the body is
  capped on decoded bytes, and decoded a bounded piece at a time, so a compression bomb never expands.
"""

import ipaddress
import math
import socket
import ssl
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import certifi
import httpcore
import httpx
from django.conf import settings

try:
    import brotli
except ImportError:
    try:
        import brotlicffi as brotli
    except ImportError:
        brotli = None
if brotli is not None and not hasattr(brotli.Decompressor, "can_accept_more_data"):
    brotli = None  # before 1.2 a Brotli decoder cannot bound its output: a bomb would expand in one call

MAX_REDIRECTS = 5
MAX_RETRY_AFTER = 6 * 3600.0
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/json;q=0.9, "
    "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.1"
)
ACCEPT_ENCODING = "gzip, deflate, br" if brotli else "gzip, deflate"
REDIRECT_STATUSES = {301, 302, 303, 307, 308}
PERMANENT_REDIRECT_STATUSES = {301, 308}
# At most this many decoded bytes come out of one decoding step, per Content-Encoding layer.
PIECE = 64 * 1024
# Pools kept per thread. A pool is keyed by hostname and checked address.
MAX_POOLS = 32
# Below the 5 s idle timeout of Apache and Node, so we never reuse a connection the server is closing.
KEEPALIVE_EXPIRY = 4.0


class FetchError(Exception):
    """Human-readable message (str(e)) that is stored on the feed as its last error."""


class BlockedAddress(FetchError):
    """URL refused by the guard (bad scheme, private address, ...)."""


class RetryLater(FetchError):
    """The server answered 429 or 503: not a feed error, come back later."""

    def __init__(self, message: str, *, status: int, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class Response:
    url: str  # final URL after redirects
    status: int  # 200 or 304
    content: bytes  # decoded body (b"" on 304)
    headers: httpx.Headers  # final response headers
    permanent_redirect: str | None  # the final URL if every hop of the redirect chain was 301/308

    @property
    def not_modified(self) -> bool:
        return self.status == 304


def check_url(url: str) -> str:
    """Validate a feed URL (http or https, a host, public addresses unless private networks are allowed).

    Returns the normalized URL or raises BlockedAddress/FetchError.
    """
    return str(_check(url)[0])


def fetch(url: str, *, etag: str = "", last_modified: str = "") -> Response:
    """GET a feed through the guard. Raises FetchError (RetryLater on 429/503) on anything but 200 or 304."""
    connect, read, total = (
        settings.FEEDS_CONNECT_TIMEOUT,
        settings.FEEDS_READ_TIMEOUT,
        settings.FEEDS_TOTAL_TIMEOUT,
    )
    deadline = time.monotonic() + total
    headers = [
        (b"User-Agent", settings.FEEDS_USER_AGENT.encode()),
        (b"Accept", ACCEPT.encode()),
        (b"Accept-Encoding", ACCEPT_ENCODING.encode()),
    ]
    if etag:
        headers.append((b"If-None-Match", etag.encode()))
    if last_modified:
        headers.append((b"If-Modified-Since", last_modified.encode()))
    timeouts = {"connect": connect, "read": read, "write": read, "pool": read}
    try:
        return _fetch(url, headers, timeouts, deadline)
    except httpcore.TimeoutException as exc:
        # Every wait is cut at the deadline (see _PinnedBackend), so one that ends there was cut by it.
        if time.monotonic() >= deadline - 0.01:
            raise FetchError(f"timed out after {total:g} s") from exc
        if isinstance(exc, httpcore.ConnectTimeout):
            raise FetchError(f"connect timed out after {connect:g} s") from exc
        raise FetchError(f"timed out after {read:g} s without data") from exc
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as exc:
        raise FetchError(_describe(exc)) from exc


def _fetch(url: str, headers: list[tuple[bytes, bytes]], timeouts: dict, deadline: float) -> Response:
    current, addresses = _check(url)
    seen = {str(current)}
    hops = 0
    permanent = True  # every redirect so far was 301 or 308
    while True:
        with closing(_send(current, addresses, headers, timeouts, deadline)) as response:
            status = response.status
            response_headers = httpx.Headers(response.headers)
            location = response_headers.get("location")
            if status not in REDIRECT_STATUSES or not location:
                moved_to = str(current) if hops and permanent else None
                return _finish(current, response, response_headers, moved_to)
        # The redirect's body is left unread: closing drops that connection, which is cheaper than reading.
        hops += 1
        if hops > MAX_REDIRECTS:
            raise FetchError(f"too many redirects (more than {MAX_REDIRECTS})")
        permanent = permanent and status in PERMANENT_REDIRECT_STATUSES
        try:
            target = current.join(location).copy_with(fragment=None)
        except httpx.InvalidURL as exc:
            raise FetchError(f"invalid redirect location: {location[:200]}") from exc
        if str(target) in seen:
            raise FetchError("too many redirects (a redirect loop)")
        seen.add(str(target))
        try:
            current, addresses = _check(target)
        except FetchError as exc:
            raise type(exc)(f"redirect refused: {exc}") from exc


def _finish(
    url: httpx.URL, response: httpcore.Response, headers: httpx.Headers, moved_to: str | None
) -> Response:
    status = response.status
    message = f"HTTP {status} {httpx.codes.get_reason_phrase(status)}".rstrip()
    if status in (429, 503):
        retry_after = _retry_after(headers.get("retry-after"))
        if retry_after is not None:
            message += f" (retry after {retry_after:g} s)"
        raise RetryLater(message, status=status, retry_after=retry_after)
    if status not in (200, 304):
        raise FetchError(message)
    # A 304 has no body, but reading its (empty) end lets the connection be kept alive for the next fetch.
    content = _read_body(response, headers.get("content-encoding", ""))
    return Response(str(url), status, content, headers, moved_to)


def _read_body(response: httpcore.Response, content_encoding: str) -> bytes:
    limit = settings.FEEDS_MAX_BYTES
    parts = []
    size = 0
    try:
        # The deadline is checked before every network read (see _BoundedStream).
        for piece in _decode(response.iter_stream(), content_encoding):
            size += len(piece)
            if size > limit:
                raise FetchError(f"response is larger than the limit of {limit} bytes")
            parts.append(piece)
    except _DECODE_ERRORS as exc:
        raise FetchError(f"cannot decode the body ({content_encoding}): {exc}") from exc
    return b"".join(parts)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date), capped; None if absent or invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


# The guard


def _check(url: str | httpx.URL) -> tuple[httpx.URL, list[str]]:
    """The normalized URL and every address of its host, all checked."""
    try:
        parsed = httpx.URL(url.strip() if isinstance(url, str) else url)
    except httpx.InvalidURL as exc:
        raise FetchError(f"invalid URL: {exc}") from exc
    if parsed.scheme not in ("http", "https"):
        scheme = f"{parsed.scheme}:" if parsed.scheme else "none"
        raise BlockedAddress(f"only http and https URLs are allowed (scheme: {scheme})")
    host = parsed.raw_host.decode("ascii")
    if not host:
        raise FetchError("the URL has no host")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise FetchError(f"invalid port {parsed.port}")
    try:
        # The only lookup of this name: the request connects to these addresses, not to the name.
        # Numeric forms such as 2130706433, 0x7f.1 or 127.1 come back normalized (inet_aton).
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise FetchError(f"cannot resolve {host}") from exc
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not settings.FEEDS_ALLOW_PRIVATE_NETWORKS:
        for address in addresses:
            if not _is_public(ipaddress.ip_address(address)):
                where = host if address == host else f"{host} resolves to {address}, which"
                raise BlockedAddress(f"{where} is not a public address")
    # copy_with parses the URL again: only when there is a fragment to drop.
    return (parsed.copy_with(fragment=None) if "#" in str(parsed) else parsed), addresses


def _is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    # `is_global` alone is not enough (in Python 3.11 it is true for multicast, 6to4 and IPv4-compatible
    # addresses), hence the explicit checks.
    if ip.version == 6:
        if ip.ipv4_mapped is not None or int(ip) >> 32 == 0:  # ::ffff:a.b.c.d, ::a.b.c.d, ::1, ::
            return False
        if ip.is_site_local:
            return False
        embedded = [ip.sixtofour, ip.teredo[1] if ip.teredo else None]  # 6to4, Teredo client
        if any(v4 is not None and not _is_public(v4) for v4 in embedded):
            return False
    return ip.is_global and not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


# Connections
#
# Why a network backend: httpcore asks its backend to connect to (hostname, port). Ours ignores the name
# and connects to the address the guard checked, while everything above it (Host header, TLS SNI and
# certificate verification against the hostname, connection reuse) works on the hostname as usual.
# Connecting to an IP URL instead would need a Host header and an sni_hostname override, and would let
# the pool reuse a TLS connection made for one hostname for another hostname on the same address.
#
# Why pools per thread: a pool belongs to one (hostname, checked address), so a kept-alive connection is
# only ever reused for that address. Each thread has its own small LRU of pools: no lock is needed, and
# evicting (closing) a pool can never cut off a request another thread is making through it. Celery's
# prefork workers are single-threaded, so in practice this is one set of pools per worker process.


class _PinnedBackend(httpcore.NetworkBackend):
    """Connects to one checked address, whatever the hostname; no wait goes past `deadline`."""

    def __init__(self, host: str, address: str):
        self.host = host
        self.address = address
        self.deadline = math.inf  # set before each request by _Pools.get

    def bound(self, timeout: float | None, error: type[Exception]) -> float:
        remaining = self.deadline - time.monotonic()
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


class _Pools(threading.local):
    """This thread's connection pools, one per (hostname, checked address), least recently used first."""

    def __init__(self):
        # Certificates from certifi, not from environment variables; nothing here reads proxy variables.
        # One context per thread: httpcore sets ALPN on it for every connection.
        self.ssl_context = ssl.create_default_context(cafile=certifi.where())
        self.pools: OrderedDict[tuple[str, str], tuple[httpcore.ConnectionPool, _PinnedBackend]] = (
            OrderedDict()
        )

    def get(self, host: str, address: str, deadline: float) -> httpcore.ConnectionPool:
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


_pools = _Pools()


def _send(
    url: httpx.URL, addresses: list[str], headers: list[tuple[bytes, bytes]], timeouts: dict, deadline: float
) -> httpcore.Response:
    """Send the GET to the first checked address that accepts a connection; the caller closes the response."""
    host = url.raw_host.decode("ascii")
    request = httpcore.Request(
        "GET",
        httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path),
        headers=[(b"Host", url.netloc), *headers],
        extensions={"timeout": timeouts},
    )
    # An address we already hold a connection to first (round-robin DNS reorders them), then DNS order.
    ordered = sorted(addresses, key=lambda address: (host, address) not in _pools.pools)
    error = None
    for address in ordered:
        try:
            return _pools.get(host, address, deadline).handle_request(request)
        except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
            # As socket.create_connection does: an unreachable address (say IPv6) falls back to the next.
            error = exc
    raise error


def _describe(exc: Exception) -> str:
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


# Content-Encoding, decoded a bounded piece at a time. httpx's decoders expand each network chunk in one
# call: 64 KB of gzipped zeros become 64 MB at once, and stacked encodings multiply that.


def _decode(chunks: Iterable[bytes], content_encoding: str) -> Iterable[bytes]:
    # Codings are listed in the order they were applied, so they are undone from the last one.
    for coding in reversed([coding.strip().lower() for coding in content_encoding.split(",")]):
        if coding in ("", "identity"):
            continue
        if coding in ("gzip", "x-gzip"):
            chunks = _inflate(chunks, zlib.MAX_WBITS | 16)
        elif coding == "deflate":
            chunks = _inflate(chunks, zlib.MAX_WBITS)
        elif coding == "br" and brotli:
            chunks = _unbrotli(chunks)
        else:
            raise FetchError(f"unsupported Content-Encoding: {coding}")
    return chunks


def _inflate(chunks: Iterable[bytes], wbits: int) -> Iterator[bytes]:
    decompressor = zlib.decompressobj(wbits)
    first = True
    for chunk in chunks:
        data, piece = chunk, b""
        # Until the input is used up, and the last piece was not full (a full one may leave output pending).
        while (data or len(piece) == PIECE) and not decompressor.eof:
            try:
                piece = decompressor.decompress(data, PIECE)
            except zlib.error:
                if not (first and wbits == zlib.MAX_WBITS):
                    raise
                # "deflate" without its zlib header: raw deflate, as some servers send it.
                decompressor = zlib.decompressobj(-zlib.MAX_WBITS)
                first = False
                continue
            first = False
            data = decompressor.unconsumed_tail
            yield piece
        if decompressor.eof:
            return  # anything after the end of the compressed data is ignored


def _unbrotli(chunks: Iterable[bytes]) -> Iterator[bytes]:
    decompressor = brotli.Decompressor()
    for chunk in chunks:
        yield decompressor.process(chunk, output_buffer_limit=PIECE)
        while not decompressor.can_accept_more_data():
            yield decompressor.process(b"", output_buffer_limit=PIECE)
    while not decompressor.is_finished():  # output can still be pending once all input is in
        piece = decompressor.process(b"", output_buffer_limit=PIECE)
        if not piece:
            return  # truncated: keep what came, as for gzip
        yield piece


_DECODE_ERRORS = (zlib.error, brotli.error) if brotli else (zlib.error,)
