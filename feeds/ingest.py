"""Fetch one feed and store what is new: the code the worker, `fetchfeeds` and the admin share."""

import hashlib
import logging
import random
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from feeds.fetching import FetchError, RetryLater, check_url, fetch
from feeds.models import Entry, Feed
from feeds.parsing import ParsedFeed, ParseError, parse

log = logging.getLogger(__name__)

# A worker holds a feed at most this long (the task's hard time limit): a killed worker's
# lease runs out and the next tick fetches the feed again.
LEASE = timedelta(seconds=90)
MAX_BACKOFF = timedelta(hours=1)
MAX_RETRY_AFTER = timedelta(hours=6)
PAUSE_AFTER_ERRORS = 10
PAUSE_FOR = timedelta(days=1)
# A feed that rewrites an entry on every fetch stops being heard after this many updates.
MAX_UPDATES_PER_ENTRY = 20
# A permanent redirect is stored once seen this many times in a row.
REDIRECTS_TO_MOVE = 3
# A feed due within this much of a tick is fetched on it: ticks and due times both drift by a
# few milliseconds, and a feed due every 5 s must not slip to every 10 s.
DUE_SLACK = timedelta(seconds=1)


@dataclass
class Outcome:
    new: int = 0
    updated: int = 0
    not_modified: bool = False
    error: str = ""
    skipped: str = ""
    retry_in: int = 0

    def __str__(self):
        if self.retry_in:
            return f"retry later: the server asked us to wait {self.retry_in} s"
        if self.skipped:
            return f"skipped: {self.skipped}"
        if self.error:
            return f"error: {self.error}"
        if self.not_modified:
            return "not modified"
        return f"{self.new} new, {self.updated} updated"


def claim_due_feeds(limit: int = 1000) -> list[tuple[int, int]]:
    """Pick the feeds that are due and move each one's next fetch a full interval ahead.

    Rows are locked with SKIP LOCKED, so a second beat started by mistake takes nothing twice.
    """
    now = timezone.now()
    with transaction.atomic():
        due = list(
            Feed.objects.select_for_update(skip_locked=True)
            .filter(enabled=True, next_fetch_at__lte=now + DUE_SLACK)
            .order_by("next_fetch_at")
            .values_list("id", "interval")[:limit]
        )
        by_interval: dict[int, list[int]] = {}
        for feed_id, interval in due:
            by_interval.setdefault(interval, []).append(feed_id)
        for interval, ids in by_interval.items():
            Feed.objects.filter(id__in=ids).update(next_fetch_at=now + timedelta(seconds=interval))
    return due  # (feed id, interval) pairs


def fetch_and_store(feed_id: int) -> Outcome:
    """Fetch one feed, store its entries and record the outcome on the feed. Safe to run twice."""
    now = timezone.now()
    # Single flight: continue only if this call is the one that took the lease.
    claimed = (
        Feed.objects.filter(pk=feed_id)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(lease_until=now + LEASE)
    )
    if not claimed:
        return Outcome(
            skipped="already being fetched" if Feed.objects.filter(pk=feed_id).exists() else "gone"
        )
    feed = Feed.objects.get(pk=feed_id)
    changes: dict = {}
    try:
        outcome = _fetch_and_store(feed, changes)
    except Exception as exc:  # one broken feed must never take the worker down
        log.exception("fetch of feed %s failed unexpectedly", feed_id)
        outcome = Outcome(error=f"internal error: {type(exc).__name__}")
        changes.update(_error_changes(feed, outcome.error))
    finally:
        changes.update(lease_until=None, fetch_count=F("fetch_count") + 1)
        Feed.objects.filter(pk=feed_id).update(**changes)
    return outcome


def _fetch_and_store(feed: Feed, changes: dict) -> Outcome:
    now = timezone.now()
    changes.update(last_fetched_at=now)
    try:
        response = fetch(feed.url, etag=feed.etag, last_modified=feed.last_modified)
    except RetryLater as exc:
        wait = timedelta(seconds=exc.retry_after) if exc.retry_after else timedelta(seconds=feed.interval)
        wait = max(min(wait, MAX_RETRY_AFTER), timedelta(seconds=feed.interval))
        changes.update(next_fetch_at=now + wait, next_fetch_reason=Feed.Why.RETRY_AFTER)
        return Outcome(retry_in=int(wait.total_seconds()))
    except FetchError as exc:
        changes.update(_error_changes(feed, str(exc)))
        return Outcome(error=str(exc))

    changes.update(_ok_changes(feed), **_redirect_changes(feed, response.permanent_redirect))
    changes.update(etag=response.headers.get("etag", "")[:500])
    changes.update(last_modified=response.headers.get("last-modified", "")[:100])
    if response.not_modified:
        changes.update(not_modified_count=F("not_modified_count") + 1)
        return Outcome(not_modified=True)
    body_hash = hashlib.sha256(response.content).hexdigest()
    if body_hash == feed.body_hash:
        # Same bytes as last time from a server without validators: nothing to parse.
        changes.update(not_modified_count=F("not_modified_count") + 1)
        return Outcome(not_modified=True)
    try:
        parsed = parse(
            response.content, url=response.url, content_type=response.headers.get("content-type", "")
        )
    except ParseError as exc:
        changes.update(_error_changes(feed, str(exc)))
        return Outcome(error=str(exc))
    new, updated = store(feed, parsed)
    changes.update(body_hash=body_hash)
    return Outcome(new=new, updated=updated)


def _ok_changes(feed: Feed) -> dict:
    changes = {"error_count": 0}
    if feed.next_fetch_reason != Feed.Why.INTERVAL:
        changes["next_fetch_reason"] = Feed.Why.INTERVAL
    return changes


def _error_changes(feed: Feed, message: str) -> dict:
    now = timezone.now()
    errors = feed.error_count + 1
    changes = {"error_count": errors, "last_error": message[:2000], "last_error_at": now}
    if errors >= PAUSE_AFTER_ERRORS:
        changes.update(next_fetch_at=now + PAUSE_FOR, next_fetch_reason=Feed.Why.PAUSED)
    else:
        # Exponential backoff with jitter, so feeds that failed together do not retry together.
        wait = min(timedelta(seconds=feed.interval * 2**errors), MAX_BACKOFF)
        wait *= random.uniform(0.8, 1.2)
        changes.update(next_fetch_at=now + wait, next_fetch_reason=Feed.Why.BACKOFF)
    return changes


def _redirect_changes(feed: Feed, target: str | None) -> dict:
    """301/308 move the feed only after several consistent answers, and only to a safe URL."""
    if not target or target == feed.url:
        return {"redirect_url": "", "redirect_count": 0} if feed.redirect_count else {}
    count = feed.redirect_count + 1 if target == feed.redirect_url else 1
    if count < REDIRECTS_TO_MOVE:
        return {"redirect_url": target, "redirect_count": count}
    try:
        check_url(target)
    except FetchError:
        return {"redirect_url": "", "redirect_count": 0}
    if Feed.objects.filter(url=target).exclude(pk=feed.pk).exists():
        return {"redirect_url": "", "redirect_count": 0}
    log.info("feed %s moved permanently to %s", feed.pk, target)
    return {"url": target, "redirect_url": "", "redirect_count": 0}


def content_hash(title: str, link: str, summary_html: str, author: str) -> str:
    return hashlib.sha256("\x1f".join((title, link, summary_html, author)).encode()).hexdigest()


def store(feed: Feed, parsed: ParsedFeed) -> tuple[int, int]:
    """Store a parsed document's entries for `feed`; returns (new, updated).

    The unique (feed, key) constraint is the truth: a row another fetch inserted first is
    skipped, never duplicated. Entries an admin removed stay removed.
    """
    now = timezone.now()
    new = updated = 0
    # Oldest first, so the newest entry gets the highest change number and lands on top.
    items = list(reversed(parsed.entries))
    with transaction.atomic():
        if parsed.title and parsed.title != feed.title or parsed.site_url != feed.site_url:
            feed.title, feed.site_url = parsed.title[:500] or feed.title, parsed.site_url
            Feed.objects.filter(pk=feed.pk).update(title=feed.title, site_url=feed.site_url)
        existing = {e.key: e for e in Entry.objects.filter(feed=feed, key__in=[i.key for i in items])}
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
                    continue  # stored a moment ago by another fetch of this feed
                existing[item.key] = entry
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
    return new, updated


def _copy(entry: Entry, item, first_seen) -> None:
    entry.link = item.link
    entry.title = item.title
    entry.summary_html = item.summary_html
    entry.author = item.author
    entry.published = item.published or first_seen
    entry.updated = item.updated or entry.published


def add_feed(url: str, interval: int | None = None) -> tuple[Feed, bool]:
    """Validate a URL with the fetch guard and register it; returns (feed, created)."""
    url = check_url(url)
    return Feed.objects.get_or_create(
        url=url, defaults={"interval": interval or settings.FEEDS_DEFAULT_INTERVAL}
    )
