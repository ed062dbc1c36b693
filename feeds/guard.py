"""The fetch guard: which URLs may be fetched, checked once per URL and once per redirect hop.

Only http and https; the host is resolved once and refused if any of its addresses is not public
(unless FEEDS_ALLOW_PRIVATE_NETWORKS is on). The request then connects to the addresses checked here
(feeds/connections.py), never to a second lookup of the name, so DNS rebinding cannot slip past.
"""

import ipaddress
import socket

import httpx
from django.conf import settings

# Feed.url, Feed.redirect_url and Entry.link are 2048 characters long.
MAX_URL = 2048


class FetchError(Exception):
    """Human-readable message (str(e)) that is stored on the feed as its last error."""


class BlockedAddress(FetchError):
    """URL refused by the guard (bad scheme, private address, ...)."""


def check_url(url: str) -> str:
    """Validate a feed URL (http or https, a host, public addresses unless private networks are allowed).

    Returns the normalized URL or raises BlockedAddress/FetchError. A URL longer than MAX_URL is refused:
    it could not be stored.
    """
    checked = str(check(url)[0])
    if len(checked) > MAX_URL:
        raise FetchError(f"the URL is too long ({len(checked)} characters; at most {MAX_URL})")
    return checked


def check(url: str | httpx.URL) -> tuple[httpx.URL, list[str]]:
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
            if not is_public(ipaddress.ip_address(address)):
                where = host if address == host else f"{host} resolves to {address}, which"
                raise BlockedAddress(f"{where} is not a public address")
    # copy_with parses the URL again: only when there is a fragment to drop.
    return (parsed.copy_with(fragment=None) if "#" in str(parsed) else parsed), addresses


def is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    # `is_global` alone is not enough (in Python 3.11 it is true for multicast, 6to4 and IPv4-compatible
    # addresses), hence the explicit checks.
    if ip.version == 6:
        if ip.ipv4_mapped is not None or int(ip) >> 32 == 0:  # ::ffff:a.b.c.d, ::a.b.c.d, ::1, ::
            return False
        if ip.is_site_local:
            return False
        embedded = [ip.sixtofour, ip.teredo[1] if ip.teredo else None]  # 6to4, Teredo client
        if any(v4 is not None and not is_public(v4) for v4 in embedded):
            return False
    return ip.is_global and not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )
