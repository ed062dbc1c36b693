"""What parsing gives, whatever the format: entries with their keys, the caps, and the errors.

Identity: an entry is its id (RSS guid, Atom id, JSON Feed id), else its link, else the hash of its
title and content; `key` is the sha256 of that. Within one document:
- entries with the same identity that do not differ (same link, title and content) are one entry:
  the first of the list is kept, the later ones are dropped;
- entries that share an identity but differ (broken publishers give every item the same guid) all
  get a longer identity, the shared one plus their link (or, where the link does not tell them
  apart either, plus the hash of their title and content), so distinct items stay distinct.
The longer identity is stable while the publisher keeps sharing the id; an entry whose id only
becomes shared later gets a new key once (the store sees it as new).

Which entries: the MAX_ENTRIES newest by date, whatever the document order (a feed listing its items
oldest first keeps its newest ones, and every item it adds later), listed newest first so that the
store gives the newest the highest change number. Undated entries keep their place in the document.
A document listing more than MAX_ITEMS items is refused before the expensive work: reading them all
would cost seconds of CPU for entries that are never kept.
"""

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

MAX_ENTRIES = 500
MAX_ITEMS = 10_000
MAX_TITLE = 1000
MAX_FEED_TITLE = 500  # Feed.title is a CharField(500)
MAX_SUMMARY = 100_000
MAX_AUTHOR = 500  # Entry.author is a CharField(500)
MAX_GUID = 2048

T = TypeVar("T")

# What a bad field or a crash of feedparser's fallback parser raises: that entry's (or that document's)
# problem. Named rather than `Exception`, so that a task's time limit is never taken for one.
BAD_INPUT = (
    ArithmeticError,
    AssertionError,
    AttributeError,
    LookupError,
    RuntimeError,
    TypeError,
    ValueError,
)


class ParseError(Exception):
    """str(e) is a clear human message stored on the feed."""


class NotAFeed(ParseError):
    """The document is a web page, not a feed; `feed_links` are the feeds it advertises."""

    def __init__(self, message: str, feed_links: list[str] | None = None):
        super().__init__(message)
        self.feed_links = feed_links or []


@dataclass
class ParsedEntry:
    key: str
    guid: str
    link: str
    title: str
    summary_html: str
    author: str
    published: datetime | None
    updated: datetime | None


@dataclass
class ParsedFeed:
    title: str
    site_url: str
    entries: list[ParsedEntry] = field(default_factory=list)
    # WebSub discovery: the hubs the document names (rel="hub", JSON Feed `hubs`) and its rel="self".
    hubs: list[str] = field(default_factory=list)
    self_url: str = ""


def too_many_items(count: int) -> ParseError:
    return ParseError(
        f"too many items: the document lists more than {MAX_ITEMS:,} (the newest {MAX_ENTRIES} are kept "
        f"of at most {MAX_ITEMS:,})"
    )


def newest_first(items: list[T], date: Callable[[T], datetime | None]) -> list[T]:
    """`items` newest first by `date`; undated items keep their place in the document."""
    dates = [date(item) for item in items]
    slots = [n for n, when in enumerate(dates) if when is not None]
    # Stable: items of the same date keep their document order.
    by_date = sorted(slots, key=lambda n: dates[n], reverse=True)
    ordered = list(items)
    for slot, n in zip(slots, by_date, strict=True):
        ordered[slot] = items[n]
    return ordered


def newest(items: list[T], date: Callable[[T], datetime | None], cap: int = MAX_ENTRIES) -> list[T]:
    """The `cap` first of newest_first(items), in document order."""
    if len(items) <= cap:
        return list(items)
    chosen = {id(item) for item in newest_first(items, date)[:cap]}
    return [item for item in items if id(item) in chosen]


def entry_date(entry: ParsedEntry) -> datetime | None:
    return entry.published or entry.updated


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def assign_keys(entries: list[ParsedEntry]) -> list[ParsedEntry]:
    """Give each entry its key and drop duplicates, by the rule in the module docstring."""
    groups: dict[str, list[ParsedEntry]] = {}
    for entry in entries:
        identity = entry.guid or entry.link or f"{entry.title}\n{entry.summary_html}"
        groups.setdefault(identity, []).append(entry)
    for identity, members in groups.items():
        distinct = list(dict.fromkeys((e.link, e.title, e.summary_html) for e in members))
        if len(distinct) == 1:
            for entry in members:
                entry.key = _sha256(identity)
            continue
        links = [link for link, _, _ in distinct]
        for entry in members:
            suffix = entry.link
            if not entry.link or links.count(entry.link) > 1:
                suffix += "\n" + _sha256(f"{entry.title}\n{entry.summary_html}")
            entry.key = _sha256(f"{identity}\n{suffix}")
    kept: dict[str, ParsedEntry] = {}
    for entry in entries:
        if not (entry.guid or entry.link or entry.title or entry.summary_html):
            continue  # nothing to show and nothing to know it by, e.g. a stray empty <item/>
        entry.guid = entry.guid[:MAX_GUID]
        kept.setdefault(entry.key, entry)  # first in document order wins
    return list(kept.values())
