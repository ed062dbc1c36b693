"""Bytes from a URL, safely: the one HTTP client that every outbound request of the app goes through.

- The guard (feeds/guard.py) allows http and https only, resolves the host once and refuses it if any of
  its addresses is not public (unless FEEDS_ALLOW_PRIVATE_NETWORKS is on).
- The request then connects to the address that was checked, never to a second lookup of the name, so
  DNS rebinding cannot slip past the guard; TLS still sends the hostname (SNI) and verifies the
  certificate for it (feeds/connections.py).
- Redirects are followed by hand, each hop checked by the guard again.
- One deadline bounds every connect, handshake, read and decoding step of a fetch, redirects included;
  the caller may pass its own and cancel it. Every layer of the body (raw, then each content coding) is
  capped, and decoded a bounded piece at a time (feeds/codings.py), so a compression bomb never expands.
"""

from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlencode

import httpcore
import httpx
from django.conf import settings

from feeds.bounds import Deadline, Expired
from feeds.codings import ACCEPT_ENCODING, DECODE_ERRORS, decode
from feeds.codings import brotli as brotli  # None when brotli is not installed
from feeds.connections import describe, pools, send
from feeds.guard import MAX_URL, BlockedAddress, FetchError, check, check_url

__all__ = [
    "BlockedAddress",
    "FetchError",
    "Response",
    "RetryLater",
    "check_url",
    "fetch",
    "post_form",
]

_pools = pools  # the calling thread's connection pools (tests close them between tests)

MAX_REDIRECTS = 5
MAX_RETRY_AFTER = 6 * 3600.0
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/json;q=0.9, "
    "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.1"
)
REDIRECT_STATUSES = {301, 302, 303, 307, 308}
PERMANENT_REDIRECT_STATUSES = {301, 308}


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
    # The final URL if every hop of the redirect chain was 301/308 and it fits in Feed.url (MAX_URL).
    permanent_redirect: str | None

    @property
    def not_modified(self) -> bool:
        return self.status == 304


def fetch(url: str, *, etag: str = "", last_modified: str = "", deadline: Deadline | None = None) -> Response:
    """GET a feed through the guard. Raises FetchError (RetryLater on 429/503) on anything but 200 or 304.

    `deadline` (FEEDS_TOTAL_TIMEOUT from now by default) bounds the whole fetch; cancelling it from
    another thread stops the fetch at its next network wait or decoded piece.
    """
    connect, read = settings.FEEDS_CONNECT_TIMEOUT, settings.FEEDS_READ_TIMEOUT
    deadline = deadline or Deadline(settings.FEEDS_TOTAL_TIMEOUT)
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
    except (httpcore.TimeoutException, Expired) as exc:
        # Every wait is cut at the deadline (connections._PinnedBackend): one that ends there was cut by it.
        if deadline.cancelled:
            raise FetchError("cancelled: the fetch was given up") from exc
        if isinstance(exc, Expired) or deadline.remaining() <= 0.01:
            raise FetchError(f"timed out after {deadline.seconds:g} s") from exc
        if isinstance(exc, httpcore.ConnectTimeout):
            raise FetchError(f"connect timed out after {connect:g} s") from exc
        raise FetchError(f"timed out after {read:g} s without data") from exc
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as exc:
        raise FetchError(describe(exc)) from exc


def post_form(url: str, fields: dict[str, str]) -> tuple[int, str]:
    """POST a form through the guard (a WebSub hub request): the status and the start of the body.

    Redirects are not followed: a hub that moves answers with an error, which is recorded.
    """
    read = settings.FEEDS_READ_TIMEOUT
    deadline = Deadline(settings.FEEDS_TOTAL_TIMEOUT)
    timeouts = {"connect": settings.FEEDS_CONNECT_TIMEOUT, "read": read, "write": read, "pool": read}
    body = urlencode(fields).encode()
    headers = [
        (b"User-Agent", settings.FEEDS_USER_AGENT.encode()),
        (b"Content-Type", b"application/x-www-form-urlencoded"),
        (b"Content-Length", str(len(body)).encode()),
    ]
    current, addresses = check(url)
    try:
        with closing(send(current, addresses, headers, timeouts, deadline, b"POST", body)) as response:
            # A few bytes of the answer say why a hub refused; the rest is not read.
            start = b""
            for chunk in response.iter_stream():
                start += chunk
                if len(start) >= 1024:
                    break
            return response.status, start[:1024].decode("utf-8", "replace")
    except (httpcore.TimeoutException, Expired) as exc:
        raise FetchError(f"timed out after {deadline.seconds:g} s") from exc
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as exc:
        raise FetchError(describe(exc)) from exc


def _fetch(url: str, headers: list[tuple[bytes, bytes]], timeouts: dict, deadline: Deadline) -> Response:
    current, addresses = check(url)
    seen = {str(current)}
    hops = 0
    permanent = True  # every redirect so far was 301 or 308
    while True:
        with closing(send(current, addresses, headers, timeouts, deadline)) as response:
            status = response.status
            response_headers = httpx.Headers(response.headers)
            location = response_headers.get("location")
            if status not in REDIRECT_STATUSES or not location:
                # A move to a URL that does not fit in Feed.url is followed, never recorded.
                moved = hops and permanent and len(str(current)) <= MAX_URL
                return _finish(current, response, response_headers, str(current) if moved else None, deadline)
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
            current, addresses = check(target)
        except FetchError as exc:
            raise type(exc)(f"redirect refused: {exc}") from exc


def _finish(
    url: httpx.URL,
    response: httpcore.Response,
    headers: httpx.Headers,
    moved_to: str | None,
    deadline: Deadline,
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
    content = _read_body(response, headers.get("content-encoding", ""), deadline)
    return Response(str(url), status, content, headers, moved_to)


def _read_body(response: httpcore.Response, content_encoding: str, deadline: Deadline) -> bytes:
    try:
        # The deadline is checked before every network read and for every decoded piece.
        pieces = decode(response.iter_stream(), content_encoding, settings.FEEDS_MAX_BYTES, deadline)
        return b"".join(pieces)
    except DECODE_ERRORS as exc:
        raise FetchError(f"cannot decode the body ({content_encoding}): {exc}") from exc


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
