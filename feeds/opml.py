"""OPML import and export of the feed list. Untrusted XML goes through defusedxml."""

from xml.sax.saxutils import quoteattr

from defusedxml import ElementTree as SafeElementTree
from defusedxml.common import DefusedXmlException

from feeds.models import Feed

MAX_OPML_BYTES = 5 * 1024 * 1024


class OPMLError(ValueError):
    """A clear message for whoever uploaded the file."""


def feed_urls(content: bytes) -> list[tuple[str, str]]:
    """(xmlUrl, title) of every feed outline, nested folders included, in document order."""
    if len(content) > MAX_OPML_BYTES:
        raise OPMLError(f"the OPML file is larger than {MAX_OPML_BYTES // (1024 * 1024)} MB")
    try:
        root = SafeElementTree.fromstring(content)
    except DefusedXmlException as exc:
        raise OPMLError(f"refused: the OPML file uses forbidden XML features ({type(exc).__name__})") from exc
    except SafeElementTree.ParseError as exc:
        raise OPMLError(f"not valid XML: {exc}") from exc
    if root.tag != "opml":
        raise OPMLError("not an OPML file: the root element is not <opml>")
    found, seen = [], set()
    for outline in root.iter("outline"):
        url = (outline.get("xmlUrl") or outline.get("xmlurl") or "").strip()
        if url and url not in seen:
            seen.add(url)
            title = outline.get("title")  # an empty title is a title; text is the fallback
            found.append((url, (outline.get("text", "") if title is None else title).strip()))
    return found


def export(feeds=None) -> bytes:
    feeds = Feed.objects.order_by("id") if feeds is None else feeds
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<opml version="2.0">',
        "  <head><title>Livelog feeds</title></head>",
        "  <body>",
    ]
    for feed in feeds:
        attributes = {"type": "rss", "text": feed.title or feed.url, "title": feed.title, "xmlUrl": feed.url}
        if feed.site_url:
            attributes["htmlUrl"] = feed.site_url
        lines.append("    <outline " + " ".join(f"{k}={quoteattr(v)}" for k, v in attributes.items()) + "/>")
    lines += ["  </body>", "</opml>", ""]
    return "\n".join(lines).encode()
