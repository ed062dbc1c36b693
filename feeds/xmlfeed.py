"""RSS 0.9x/1.0/2.0 and Atom 0.3/1.0, read by feedparser (run safely, see feeds/xmlsafe.py), to entries.

An entry's body is its full content (content:encoded, atom:content) if it shows anything once
sanitized, else its summary (an iframe-only embed or binary content does not hide a text summary).
Every author is kept, joined. One bad field costs that field and one bad entry that entry: a
document is refused only when nothing in it can be read.
"""

import logging
import re
from datetime import UTC, datetime

from feeds.bounds import Deadline
from feeds.htmlpage import not_a_feed
from feeds.parsed import (
    BAD_INPUT,
    MAX_AUTHOR,
    MAX_FEED_TITLE,
    MAX_ITEMS,
    MAX_SUMMARY,
    MAX_TITLE,
    ParsedEntry,
    ParsedFeed,
    ParseError,
    assign_keys,
    entry_date,
    newest,
    newest_first,
    too_many_items,
)
from feeds.sanitizing import clean, html_to_text, http_url, http_urls, one_line, render_body, shows_nothing
from feeds.xmlsafe import pieces, read

log = logging.getLogger(__name__)

# Items and entries, counted before parsing; linear (the prefix cannot be confused with the name).
ITEM = re.compile(r"<(?:[A-Za-z_][\w.-]*:)?(?:item|entry)\b")
HTML_ELEMENT = re.compile(r"<html\b", re.IGNORECASE)
COUNT_PIECE = 1 << 18


def parse_xml(text: str, url: str, root: str, now: datetime, deadline: Deadline) -> ParsedFeed:
    """`text` starts with its first markup; `root` is its root element's name, for messages."""
    if _too_many_items(text, deadline):
        raise too_many_items(MAX_ITEMS + 1)
    try:
        result = read(text, url, deadline)
    except ParseError:
        raise
    except BAD_INPUT as exc:
        # Its fallback parser is old code fed hostile input: a crash is this feed's error, not ours.
        raise ParseError(f"not a feed: unreadable XML ({type(exc).__name__}: {exc})") from exc
    raw_entries = result.get("entries", [])
    if not result.get("version") and not raw_entries:
        if HTML_ELEMENT.search(text, 0, 65536):
            raise not_a_feed(text, url, deadline)
        if result.get("bozo"):
            raise ParseError(f"not a feed: malformed XML ({_describe(result.get('bozo_exception'))})")
        raise ParseError(f"not a feed: an XML document whose root element is <{root}>")
    if result.get("bozo") and not raw_entries:
        problem = _describe(result.get("bozo_exception"))
        raise ParseError(f"malformed feed with no readable entries ({problem})")

    info = result.get("feed", {})
    feed_author = _author(info)
    entries = []
    for raw in newest(raw_entries, _entry_date):
        deadline.check()
        try:
            entries.append(_entry(raw, url, feed_author, now))
        except BAD_INPUT as exc:  # this entry's problem, not the feed's
            log.info("feed entry skipped: %r", exc)
    links = [link for link in info.get("links", []) if isinstance(link, dict)]
    return ParsedFeed(
        title=_title(info.get("title_detail"), info.get("title", ""), MAX_FEED_TITLE),
        site_url=http_url(info.get("link", ""), url),
        entries=newest_first(assign_keys(entries), entry_date),
        hubs=http_urls((link.get("href", "") for link in links if link.get("rel") == "hub"), url),
        self_url=next(
            iter(http_urls((link.get("href", "") for link in links if link.get("rel") == "self"), url)), ""
        ),
    )


def _too_many_items(text: str, deadline: Deadline) -> bool:
    # Every item's name holds "item" or "entry": counting those (at memchr speed) clears most
    # documents. The others are counted exactly, a piece at a time between checks of the deadline.
    if text.count("item") + text.count("entry") <= MAX_ITEMS:
        return False
    found = 0
    for start, end in pieces(text, COUNT_PIECE):
        deadline.check()
        found += sum(1 for _ in ITEM.finditer(text, start, end))
        if found > MAX_ITEMS:
            return True
    return False


def _entry(raw, url: str, feed_author: str, now: datetime) -> ParsedEntry:
    link = http_url(raw.get("link", ""), url)
    if not link:
        # The first http(s) alternate, if the preferred link was something else.
        alternates = (alt.get("href", "") for alt in raw.get("links", []) if alt.get("rel") == "alternate")
        link = next((found for href in alternates if (found := http_url(href, url))), "")
    published = _struct_date(raw, "published", "updated", "created")
    updated = _struct_date(raw, "updated", "published", "created")
    return ParsedEntry(
        key="",
        guid=clean(raw.get("id", "") or "").strip(),
        link=link,
        title=_title(raw.get("title_detail"), raw.get("title", ""), MAX_TITLE),
        summary_html=_summary(raw, link or url),
        author=_author(raw) or feed_author,
        published=_clamp(published, now),
        updated=_clamp(updated or published, now),
    )


def _entry_date(raw) -> datetime | None:
    return _struct_date(raw, "published", "updated", "created")


def _summary(raw, default_base: str) -> str:
    # The full content (content:encoded, atom:content) if it shows anything, else the summary.
    for detail in [*raw.get("content", []), raw.get("summary_detail")]:
        if detail and detail.get("value", "").strip():
            # `base` is the xml:base in effect for this very element.
            base = detail.get("base") or default_base
            body = render_body(detail["value"], detail.get("type", ""), base, MAX_SUMMARY)
            if not shows_nothing(body):
                return body
    return ""


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    if hasattr(exc, "getLineNumber"):
        return f"{exc.getMessage()} at line {exc.getLineNumber()}, column {exc.getColumnNumber()}"
    return str(exc) or type(exc).__name__


def _title(detail, value: str, cap: int) -> str:
    kind = (detail or {}).get("type", "text/plain")
    text = value or ""
    if "html" in kind or "xml" in kind:
        text = html_to_text(text)
    return one_line(text, cap)


def _author(raw) -> str:
    # Every <author> (and <dc:creator>) of an entry, by name; feedparser's `author` holds only the last.
    names = [(a.get("name") or "").strip() for a in raw.get("authors", []) if isinstance(a, dict)]
    names = list(dict.fromkeys(name for name in names if name))
    if not names:
        detail = raw.get("author_detail") or {}
        names = [detail.get("name") or raw.get("author") or ""]
    return one_line(", ".join(names), MAX_AUTHOR)


def _struct_date(raw, *names: str) -> datetime | None:
    for name in names:
        # dict.get: FeedParserDict.get("updated_parsed") answers with published_parsed, and warns.
        parsed = dict.get(raw, f"{name}_parsed")
        if parsed:
            try:
                return datetime(*parsed[:5], min(parsed[5], 59), tzinfo=UTC)
            except (TypeError, ValueError, OverflowError):
                continue
    return None


def _clamp(value: datetime | None, now: datetime) -> datetime | None:
    # A date in the future would pin an entry above everything published after it.
    return min(value, now) if value is not None else None
