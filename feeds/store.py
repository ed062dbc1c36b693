"""Storing entries: the only code that writes them, for fetches, pushes (WebSub) and posts alike.

A caller hands over entries already parsed and sanitized (feeds/parsing.py); here they meet the
database's rules: one row per (feed, key), an update only when what a reader sees changed, at most
MAX_UPDATES_PER_ENTRY updates per entry, and an entry an admin removed stays removed.
"""

import hashlib
from collections.abc import Iterable
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from feeds import stats
from feeds.models import Entry, Feed
from feeds.parsing import ParsedEntry, ParsedFeed

# A feed that rewrites an entry on every fetch stops being heard after this many updates.
MAX_UPDATES_PER_ENTRY = 20

# What store_entries() needs of the rows it already has; an update then writes every visible field.
STORED_FIELDS = (
    "id", "feed_id", "key", "guid", "first_seen", "content_hash", "update_count", "removed_at",
    "seq", "created_seq",
)  # fmt: skip


def content_hash(title: str, link: str, summary_html: str, author: str) -> str:
    return hashlib.sha256("\x1f".join((title, link, summary_html, author)).encode()).hexdigest()


def store(feed: Feed, parsed: ParsedFeed, fetched_at: datetime | None = None) -> tuple[int, int]:
    """Store a parsed document for `feed`: its title and site, then its entries; returns (new, updated)."""
    with transaction.atomic():
        if parsed.title and parsed.title != feed.title or parsed.site_url != feed.site_url:
            feed.title, feed.site_url = parsed.title[:500] or feed.title, parsed.site_url
            Feed.objects.filter(pk=feed.pk).update(title=feed.title, site_url=feed.site_url)
        return store_entries(feed, parsed.entries, fetched_at)


def store_entries(
    feed: Feed, entries: Iterable[ParsedEntry], fetched_at: datetime | None = None
) -> tuple[int, int]:
    """Store entries (newest first, as documents list them) for `feed`; returns (new, updated).

    The unique (feed, key) constraint is the truth: a row another writer inserted first is
    skipped, never duplicated. `fetched_at` (when the bytes arrived) feeds the stage latencies.
    """
    now = timezone.now()
    new = updated = 0
    published = []
    # Oldest first, so the newest entry gets the highest change number and lands on top.
    items = list(reversed(list(entries)))
    with transaction.atomic():
        rows = Entry.objects.filter(feed=feed, key__in=[i.key for i in items]).only(*STORED_FIELDS)
        existing = {e.key: e for e in rows}
        for item in items:
            digest = content_hash(item.title, item.link, item.summary_html, item.author)
            entry = existing.get(item.key)
            if entry is None:
                entry = Entry(feed=feed, key=item.key, guid=item.guid, first_seen=now, content_hash=digest)
                _copy(entry, item, now)
                try:
                    with transaction.atomic():
                        entry.save()
                except IntegrityError:
                    continue  # stored a moment ago by another writer of this feed
                existing[item.key] = entry
                published.append(item.published)
                new += 1
            elif entry.removed_at is None and entry.content_hash != digest:
                if entry.update_count >= MAX_UPDATES_PER_ENTRY:
                    continue
                entry.feed = feed
                _copy(entry, item, entry.first_seen)
                entry.content_hash = digest
                entry.update_count += 1
                entry.save()
                updated += 1
    if published and fetched_at is not None:
        stats.record_new_entries(published, fetched_at, timezone.now())
    return new, updated


def _copy(entry: Entry, item: ParsedEntry, first_seen: datetime) -> None:
    entry.link = item.link
    entry.title = item.title
    entry.summary_html = item.summary_html
    entry.author = item.author
    entry.published = item.published or first_seen
    entry.updated = item.updated or entry.published
