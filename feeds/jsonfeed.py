"""JSON Feed 1.0 and 1.1, read by hand. Liberal where the meaning is clear: a `version` of "1.1" for
the spec's URL, RFC 822 dates, entities in titles. One bad field costs that field, one bad item that
item, never the feed.
"""

import html
import json
import logging
from datetime import UTC, datetime

from feedparser.datetimes import _parse_date as parse_loose_date

from feeds.bounds import Deadline
from feeds.parsed import (
    BAD_INPUT,
    MAX_AUTHOR,
    MAX_FEED_TITLE,
    MAX_ITEMS,
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
from feeds.parsed import MAX_SUMMARY as SUMMARY
from feeds.sanitizing import clean, http_url, http_urls, one_line, render_body

log = logging.getLogger(__name__)

# The spec's URLs, and the bare numbers some publishers write instead.
VERSION_URLS = ("https://jsonfeed.org/version/", "http://jsonfeed.org/version/")
VERSION_NUMBERS = {"1", "1.0", "1.1"}


def parse_json(text: str, url: str, now: datetime, deadline: Deadline) -> ParsedFeed:
    try:
        doc = json.loads(text, strict=False)  # raw control characters in strings are common
    except (ValueError, RecursionError) as exc:
        raise ParseError(f"not a feed: invalid JSON ({exc})") from None
    version = doc.get("version") if isinstance(doc, dict) else None
    if not isinstance(version, str) or not (
        version.startswith(VERSION_URLS) or version.strip() in VERSION_NUMBERS
    ):
        raise ParseError(
            "not a feed: JSON, but not a JSON Feed ('version' is not https://jsonfeed.org/version/…)"
        )
    items = doc.get("items")
    if not isinstance(items, list):
        raise ParseError("invalid JSON Feed: 'items' is missing or not a list")
    if len(items) > MAX_ITEMS:
        raise too_many_items(len(items))
    deadline.check()

    home = http_url(_str(doc.get("home_page_url")), url)
    feed_author = _author(doc)
    items = [item for item in items if isinstance(item, dict)]
    entries = []
    for item in newest(items, _item_date):
        deadline.check()
        try:
            entries.append(_entry(item, home or url, feed_author, now))
        except BAD_INPUT as exc:  # this item's problem, not the feed's
            log.info("JSON Feed item skipped: %r", exc)
    hubs = doc.get("hubs") if isinstance(doc.get("hubs"), list) else []
    return ParsedFeed(
        title=_title(doc.get("title"), MAX_FEED_TITLE),
        site_url=home,
        entries=newest_first(assign_keys(entries), entry_date),
        # JSON Feed 1.1: hubs are {"type": "WebSub", "url": ...}; other types are other protocols.
        hubs=http_urls(
            (
                _str(h.get("url"))
                for h in hubs
                if isinstance(h, dict) and _str(h.get("type")).lower() == "websub"
            ),
            url,
        ),
        self_url=http_url(_str(doc.get("feed_url")), url),
    )


def _entry(item: dict, base: str, feed_author: str, now: datetime) -> ParsedEntry:
    link = http_url(_str(item.get("url")) or _str(item.get("external_url")), base)
    guid = item.get("id")
    guid = str(guid) if isinstance(guid, str | int | float) and not isinstance(guid, bool) else ""
    if _str(item.get("content_html")).strip():
        summary = render_body(_str(item.get("content_html")), "text/html", link or base, SUMMARY)
    else:
        body = _str(item.get("content_text")) or _str(item.get("summary"))
        summary = render_body(body, "text/plain", "", SUMMARY)
    published = _date(item.get("date_published"))
    updated = _date(item.get("date_modified"))
    return ParsedEntry(
        key="",
        guid=clean(guid).strip(),
        link=link,
        title=_title(item.get("title"), MAX_TITLE),
        summary_html=summary,
        author=_author(item) or feed_author,
        published=_clamp(published or updated, now),
        updated=_clamp(updated or published, now),
    )


def _item_date(item: dict) -> datetime | None:
    return _date(item.get("date_published")) or _date(item.get("date_modified"))


def _str(value) -> str:
    return value if isinstance(value, str) else ""


def _title(value, cap: int) -> str:
    # Plain text by the spec, but WordPress writes entities ("&#8211;"): unescape, strip no tags.
    return one_line(html.unescape(_str(value)), cap)


def _author(obj: dict) -> str:
    authors = obj.get("authors")
    if not isinstance(authors, list):
        authors = [obj.get("author")]  # JSON Feed 1.0
    names = [_str(a.get("name")).strip() for a in authors if isinstance(a, dict)]
    return one_line(", ".join(n for n in names if n), MAX_AUTHOR)


def _date(value) -> datetime | None:
    """An aware UTC datetime, or None for a missing or unreadable date (one that overflows included)."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)  # 0001-01-01T00:00:00+14:00 overflows here
    except (ValueError, OverflowError):
        pass
    # Not RFC 3339 (publishers write RFC 822 too): feedparser knows many date formats.
    loose = parse_loose_date(value[:100])
    if not loose:
        return None
    try:
        return datetime(*loose[:5], min(loose[5], 59), tzinfo=UTC)
    except (TypeError, ValueError, OverflowError):
        return None


def _clamp(value: datetime | None, now: datetime) -> datetime | None:
    # A date in the future would pin an entry above everything published after it.
    return min(value, now) if value is not None else None
