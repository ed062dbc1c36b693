"""Turn the bytes of a feed document into entries. Pure: no models, no network, no database.

Formats are sniffed from the bytes, never from the file name or Content-Type: JSON Feed 1.0/1.1 is
read by hand (feeds/jsonfeed.py), RSS 0.9x/1.0/2.0 and Atom 0.3/1.0 by feedparser (feeds/xmlfeed.py,
run safely by feeds/xmlsafe.py), an HTML page raises NotAFeed (with the feeds it links to) and
anything else raises ParseError.

Encoding: see feeds/charsets.py. feedparser always gets the document re-encoded as UTF-8, so it never
falls back to windows-1252 mojibake. Identity, keys, and which entries are kept (the newest by date,
whatever the document order): see feeds/parsed.py.

Every string is plain text or sanitized HTML (feeds/sanitizing.py): a title declared as HTML has its
tags stripped and entities unescaped, one declared as text is kept literally (so render titles and
authors escaped); `summary_html` went through nh3 with a small allowlist, and content declared as
text is escaped, never trusted as markup. Characters PostgreSQL or XML refuse are removed, and bidi
controls from titles, authors and links; every field is capped.

Bounds: parsing one document may use `timeout` seconds of this thread's CPU (PARSE_TIMEOUT unless
the caller says otherwise), checked throughout; past it, ParseError. No entity is ever expanded
beyond a short literal, and a document listing more than MAX_ITEMS items is refused before parsing.
"""

import re
from datetime import UTC, datetime

from feeds.bounds import Expired, cpu_deadline
from feeds.charsets import decode
from feeds.htmlpage import find_feed_links, not_a_feed
from feeds.jsonfeed import parse_json
from feeds.parsed import (
    MAX_AUTHOR,
    MAX_ENTRIES,
    MAX_FEED_TITLE,
    MAX_GUID,
    MAX_ITEMS,
    MAX_SUMMARY,
    MAX_TITLE,
    NotAFeed,
    ParsedEntry,
    ParsedFeed,
    ParseError,
    assign_keys,
)
from feeds.sanitizing import ALLOWED_TAGS, MAX_LINK, clean, html_to_text, http_url, sanitize_html
from feeds.xmlfeed import parse_xml

__all__ = [
    "ALLOWED_TAGS",
    "MAX_AUTHOR",
    "MAX_ENTRIES",
    "MAX_FEED_TITLE",
    "MAX_GUID",
    "MAX_ITEMS",
    "MAX_LINK",
    "MAX_SUMMARY",
    "MAX_TITLE",
    "PARSE_TIMEOUT",
    "NotAFeed",
    "ParseError",
    "ParsedEntry",
    "ParsedFeed",
    "assign_keys",
    "decode",
    "discover_feed_links",
    "html_to_text",
    "http_url",
    "parse",
    "sanitize_html",
]

# Seconds of CPU one document may take (FEEDS_PARSE_TIMEOUT in the worker). The largest real feeds
# of the corpus take well under a second.
PARSE_TIMEOUT = 10.0
# Only this much of a web page is decoded to look for its feed links (see feeds/htmlpage.py).
PAGE_HEAD = 1 << 20

FEED_START = re.compile(r"<(?:\?xml|rss|feed|rdf:RDF)\b")
FEED_ROOT = re.compile(r"<(?:rss|feed|rdf:RDF)[\s>]")
ELEMENT_NAME = re.compile(r"<([A-Za-z_][\w.:-]*)")
HTML_ROOTS = {"html", "head", "body"}


def parse(
    content: bytes,
    *,
    url: str,
    content_type: str = "",
    now: datetime | None = None,
    timeout: float | None = None,
) -> ParsedFeed:
    """Parse one feed document fetched from `url`. Raises ParseError (or NotAFeed) with a clear message."""
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    timeout = timeout or PARSE_TIMEOUT
    deadline = cpu_deadline(timeout)
    try:
        return _parse(content, url, content_type, now, deadline)
    except Expired:
        raise ParseError(
            f"too costly to read: parsing took more than {timeout:g} s of CPU (the document is "
            f"{len(content):,} bytes)"
        ) from None


def discover_feed_links(content: bytes, url: str) -> list[str]:
    """The absolute URLs of the feeds an HTML page advertises with <link rel="alternate">."""
    try:
        return find_feed_links(clean(decode(content[:PAGE_HEAD], "")), url, cpu_deadline(PARSE_TIMEOUT))
    except Expired:
        return []


def _parse(content: bytes, url: str, content_type: str, now: datetime, deadline) -> ParsedFeed:
    if not content.strip():
        raise ParseError("empty document: the server sent no content")
    text = clean(decode(content, content_type)).lstrip("\ufeff \t\r\n")
    deadline.check()
    if text.startswith(("{", "[")):
        return parse_json(text, url, now, deadline)
    if not text.startswith("<"):
        start = FEED_START.search(text, 0, 1024)
        if start is None:
            hint = " (it looks like compressed gzip data)" if content[:2] == b"\x1f\x8b" else ""
            raise ParseError(f"not a feed: the document is neither XML nor JSON{hint}")
        text = text[start.start() :]  # junk before the feed, e.g. a PHP warning
    root, doctype = _root_element(text)
    if (root in HTML_ROOTS or doctype.startswith("html")) and not FEED_ROOT.search(text):
        raise not_a_feed(text[:PAGE_HEAD], url, deadline)
    return parse_xml(text, url, root, now, deadline)


def _root_element(text: str) -> tuple[str, str]:
    """The local name of the first element and the DOCTYPE's text, both lowercased."""
    doctype = ""
    pos = 0
    end = min(len(text), 65536)
    while (pos := text.find("<", pos, end)) >= 0:
        if text.startswith("<?", pos):
            pos = _after(text, "?>", pos, end)
        elif text.startswith("<!--", pos):
            pos = _after(text, "-->", pos, end)
        elif text.startswith("<!", pos):
            close = _after(text, ">", pos, end)
            if text[pos : pos + 9].upper() == "<!DOCTYPE":
                doctype = text[pos + 9 : close - 1].strip().lower()
            pos = close
        elif name := ELEMENT_NAME.match(text, pos):
            return name[1].rsplit(":", 1)[-1].lower(), doctype
        else:
            pos += 1
    return "", doctype


def _after(text: str, marker: str, pos: int, end: int) -> int:
    found = text.find(marker, pos, end)
    return found + len(marker) if found >= 0 else end
