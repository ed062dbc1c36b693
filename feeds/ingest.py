"""Fetch feeds and store what is new: the code the worker, `fetchfeeds` and the admin share.

A fetch has three steps:
1. take the feed's lease (one fetch per feed at a time): the rows are locked, SKIP LOCKED, and their
   lease set in one short transaction, for a whole batch at once;
2. download the document through the guarded client: network only, no database, so the feeds of a
   batch download concurrently, in this process's download threads (`fetch_and_store_many`);
3. settle, in the calling thread: parse, store, then record the outcome on the feed and release the
   lease, whatever happened. Parsing happens here, one document at a time, so a batch never holds more
   than one parse tree in memory; the outcomes of downloads that finish together are recorded together.
The database does the same work per fetch however many feeds and entries it holds (indexed lookups by
id, by due time and by (feed, key) only).

Politeness: every fetch is conditional (ETag, Last-Modified, and an unchanged body is not parsed again).
A 429 or 503 with Retry-After moves the next fetch to when the server asked (capped), and is not an
error. Every other failure, 429 and 503 without Retry-After included, counts as an error: the next fetch
backs off exponentially with jitter, and after PAUSE_AFTER_ERRORS in a row the feed is paused (tried
again once a day) and flagged in the admin. A feed is never dropped.
"""

import hashlib
import logging
import math
import os
import random
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from feeds import stats
from feeds.fetching import BlockedAddress, FetchError, Response, RetryLater, check_url, fetch
from feeds.models import Entry, Feed
from feeds.parsing import NotAFeed, ParsedFeed, ParseError, parse

log = logging.getLogger(__name__)

# A worker holds a feed at most this long (the tasks' hard time limit): a killed worker's
# lease runs out and the next tick fetches the feed again.
LEASE = timedelta(seconds=90)
# The tasks' soft time limit: above one whole fetch (FEEDS_TOTAL_TIMEOUT, 20 s) plus parsing and storing.
SOFT_TIME_LIMIT = 60
TIME_LIMIT_ERROR = "timed out: the fetch ran past the worker's time limit"
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
# A column incremented by one in _release.
INCREMENT = object()
# Outcomes of a batch that are ready are recorded together once no other download finishes within this.
RELEASE_AFTER = 0.05
# At most this many feeds are claimed by one tick.
MAX_DUE = 10_000
# Feeds per fetch_feeds task, and threads per worker process that download them (settings can change both).
BATCH_SIZE = 20
FETCH_THREADS = 20
# A tick with few due feeds still spreads them over this many tasks, so every worker process helps.
SPREAD = 8


@dataclass
class Outcome:
    new: int = 0
    updated: int = 0
    not_modified: bool = False
    error: str = ""
    skipped: str = ""
    retry_in: int = 0

    @property
    def kind(self) -> str:
        """One word for counting outcomes."""
        if self.retry_in:
            return "retry-later"
        if self.skipped:
            return "skipped"
        if self.error:
            return "error"
        return "not-modified" if self.not_modified else "stored"

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


@dataclass
class Download:
    """What one GET gave: the response, or the fetch error. Made without touching the database."""

    started: datetime
    response: Response | None = None
    error: FetchError | None = None


# Scheduling


def claim_due_feeds(limit: int = MAX_DUE) -> list[tuple[int, int]]:
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
        for interval, ids in _by_interval(due).items():
            Feed.objects.filter(id__in=ids).update(next_fetch_at=now + timedelta(seconds=interval))
    return due  # (feed id, interval) pairs


def batches(due: list[tuple[int, int]], size: int | None = None) -> list[tuple[list[int], int]]:
    """Split claimed (feed id, interval) pairs into (feed ids, interval) batches of one interval each.

    Batches hold at most `size` feeds (FEEDS_BATCH_SIZE), and a small tick is spread over SPREAD
    batches or more, so that every worker process takes a share.
    """
    size = size or getattr(settings, "FEEDS_BATCH_SIZE", BATCH_SIZE)
    size = max(1, min(size, math.ceil(len(due) / SPREAD)))
    return [
        (ids[start : start + size], interval)
        for interval, ids in sorted(_by_interval(due).items())
        for start in range(0, len(ids), size)
    ]


def _by_interval(due: list[tuple[int, int]]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for feed_id, interval in due:
        groups.setdefault(interval, []).append(feed_id)
    return groups


# Fetching


def fetch_and_store(feed_id: int) -> Outcome:
    """Fetch one feed, store its entries and record the outcome on the feed. Safe to run twice."""
    taken, skipped = _take_leases([feed_id])
    if skipped:
        return skipped[feed_id]
    feed = taken[0]
    try:
        outcome, changes = _settle(feed, lambda: download(feed))
    except SoftTimeLimitExceeded:
        outcome, changes = _timed_out(feed)
    _release([(feed.pk, changes)])
    return outcome


def fetch_and_store_many(feed_ids: list[int], *, enabled_only: bool = False) -> dict[int, Outcome]:
    """Fetch several feeds at once: downloads run concurrently, each feed with its own lease and outcome.

    One feed's failure never touches another's. Outcomes are recorded together, in one transaction,
    as soon as no other download is about to finish. If the task's soft time limit strikes, every feed
    not settled yet gets the time-limit error and its lease back; its next fetch is already scheduled.
    """
    taken, outcomes = _take_leases(feed_ids, enabled_only=enabled_only)
    if not taken:
        return outcomes
    executor = _executor()
    unsettled: dict[Future, Feed] = {executor.submit(download, feed): feed for feed in taken}
    settled: list[tuple[int, dict]] = []
    try:
        while unsettled:
            done, _ = wait(unsettled, timeout=RELEASE_AFTER if settled else None, return_when=FIRST_COMPLETED)
            if not done:
                _release(settled)  # the others are slow: do not hold these leases meanwhile
                settled = []
            for future in done:
                feed = unsettled[future]
                outcomes[feed.pk], changes = _settle(feed, future.result)
                settled.append((feed.pk, changes))
                del unsettled[future]
    except SoftTimeLimitExceeded:
        log.warning("time limit reached with %d feed(s) of the batch unsettled", len(unsettled))
        for feed in unsettled.values():
            outcomes[feed.pk], changes = _timed_out(feed)
            settled.append((feed.pk, changes))
    _release(settled)
    return outcomes


def download(feed: Feed) -> Download:
    """GET the feed's document, conditionally. Touches no database, so it can run in any thread."""
    started = timezone.now()
    try:
        response = fetch(feed.url, etag=feed.etag, last_modified=feed.last_modified)
    except FetchError as exc:
        return Download(started, error=exc)
    return Download(started, response=response)


def _take_leases(feed_ids: list[int], *, enabled_only: bool = False) -> tuple[list[Feed], dict[int, Outcome]]:
    """Single flight: the feeds whose lease this call took, and an Outcome for each of the others."""
    now = timezone.now()
    free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    if enabled_only:
        free &= Q(enabled=True)
    with transaction.atomic():
        # Rows another claim holds are skipped, not waited for: that fetch is under way.
        feeds = list(Feed.objects.select_for_update(skip_locked=True).filter(free, pk__in=feed_ids))
        if feeds:
            Feed.objects.filter(pk__in=[feed.pk for feed in feeds]).update(lease_until=now + LEASE)
    skipped = {}
    missing = set(feed_ids) - {feed.pk for feed in feeds}
    if missing:
        states = dict(Feed.objects.filter(pk__in=missing).values_list("pk", "enabled"))
        for pk in missing:
            if pk not in states:
                skipped[pk] = Outcome(skipped="gone")
            elif enabled_only and not states[pk]:
                skipped[pk] = Outcome(skipped="disabled")
            else:
                skipped[pk] = Outcome(skipped="already being fetched")
    return feeds, skipped


def _settle(feed: Feed, get: Callable[[], Download]) -> tuple[Outcome, dict]:
    """Parse and store a download; the outcome, and the changes to record on the feed, whatever happened."""
    try:
        got = get()
        outcome, changes = _record(feed, got)
    except SoftTimeLimitExceeded:
        raise  # the caller records it, on this feed and on every other one still unsettled
    except Exception as exc:  # one broken feed must never take the worker down
        log.exception("fetch of feed %s failed unexpectedly", feed.pk)
        error = f"internal error: {type(exc).__name__}"
        return Outcome(error=error), _error_changes(feed, error, timezone.now())
    seconds = (timezone.now() - got.started).total_seconds()
    stats.record_fetch(outcome.kind, seconds, outcome.new, outcome.updated)
    return outcome, changes


def _timed_out(feed: Feed) -> tuple[Outcome, dict]:
    return Outcome(error=TIME_LIMIT_ERROR), _error_changes(feed, TIME_LIMIT_ERROR, timezone.now())


def _record(feed: Feed, got: Download) -> tuple[Outcome, dict]:
    """The outcome of a download, after storing its entries, and the changes to record on the feed."""
    now = timezone.now()
    changes: dict = {"last_fetched_at": got.started}
    error = got.error
    if isinstance(error, RetryLater) and error.retry_after is not None:
        # The server told us when to come back: not the feed's fault, so no error and no backoff.
        wait_for = min(timedelta(seconds=error.retry_after), MAX_RETRY_AFTER)
        wait_for = max(wait_for, timedelta(seconds=feed.interval))
        changes.update(_schedule(feed, now + wait_for, Feed.Why.RETRY_AFTER))
        return Outcome(retry_in=int(wait_for.total_seconds())), changes
    if error is not None:
        return Outcome(error=str(error)), changes | _error_changes(feed, str(error), now)

    response = got.response
    ok = _ok_changes(feed, now) | _redirect_changes(feed, response.permanent_redirect)
    validators = {
        "etag": response.headers.get("etag", "")[:500],
        "last_modified": response.headers.get("last-modified", "")[:100],
    }
    if response.not_modified:
        # A 304 need not repeat the validators: keep those we sent unless it gives new ones.
        validators = {name: value for name, value in validators.items() if value}
        return Outcome(not_modified=True), changes | ok | validators | _not_modified()
    body_hash = hashlib.sha256(response.content).hexdigest()
    if body_hash == feed.body_hash:
        # Same bytes as last time from a server without validators: nothing to parse.
        return Outcome(not_modified=True), changes | ok | validators | _not_modified()
    try:
        parsed = parse(
            response.content, url=response.url, content_type=response.headers.get("content-type", "")
        )
    except ParseError as exc:
        # The validators are not kept: the next fetch downloads the document again rather than
        # taking a 304 for a success.
        return Outcome(error=str(exc)), changes | _error_changes(feed, str(exc), now)
    new, updated = store(feed, parsed, fetched_at=got.started)
    return Outcome(new=new, updated=updated), changes | ok | validators | {"body_hash": body_hash}


def _not_modified() -> dict:
    return {"not_modified_count": INCREMENT}


def _release(settled: list[tuple[int, dict]]) -> None:
    """Record each fetch's changes on its feed, count the fetch and give the lease back; one transaction.

    Plain SQL, one executemany per set of changed columns: the ORM spends ~0.7 ms of CPU on each
    UPDATE, which at 200 fetches a second is most of the cost of a fetch (see bench/ingest_scale.py).
    """
    if not settled:
        return
    moves = [(pk, changes) for pk, changes in settled if "url" in changes]
    shapes: dict[tuple, list[list]] = {}
    for pk, changes in settled:
        if "url" in changes:
            continue
        changes = {**changes, "lease_until": None, "fetch_count": INCREMENT}
        names = tuple(sorted(changes))
        shape = tuple((name, changes[name] is INCREMENT) for name in names)
        values = [_db_value(name, changes[name]) for name in names if changes[name] is not INCREMENT]
        shapes.setdefault(shape, []).append([*values, pk])
    quote = connection.ops.quote_name
    with transaction.atomic(), connection.cursor() as cursor:
        for shape, rows in shapes.items():
            columns = [(quote(Feed._meta.get_field(name).column), increment) for name, increment in shape]
            assignments = ", ".join(
                f"{c} = {c} + 1" if increment else f"{c} = %s" for c, increment in columns
            )
            sql = f"UPDATE {quote(Feed._meta.db_table)} SET {assignments} WHERE {quote('id')} = %s"  # noqa: S608
            cursor.executemany(sql, rows)
    for pk, changes in moves:
        _release_moved(pk, changes)


def _release_moved(feed_id: int, changes: dict) -> None:
    """The release of a feed that moves to the URL it was permanently redirected to."""
    changes = {name: F(name) + 1 if value is INCREMENT else value for name, value in changes.items()}
    changes.update(lease_until=None, fetch_count=F("fetch_count") + 1)
    try:
        with transaction.atomic():
            Feed.objects.filter(pk=feed_id).update(**changes)
        return
    except IntegrityError:
        # Another feed took that URL a moment ago: stay where we are.
        changes.pop("url")
        changes.update(redirect_url="", redirect_count=0)
    Feed.objects.filter(pk=feed_id).update(**changes)


def _db_value(name: str, value):
    return Feed._meta.get_field(name).get_db_prep_save(value, connection)


def _schedule(feed: Feed, when: datetime, why: str) -> dict:
    # A disabled feed fetched by hand keeps its schedule: it is not fetched until enabled again.
    return {"next_fetch_at": when, "next_fetch_reason": why} if feed.enabled else {}


def _ok_changes(feed: Feed, now: datetime) -> dict:
    changes = {"error_count": 0} if feed.error_count else {}
    if feed.next_fetch_reason != Feed.Why.INTERVAL:
        # Back on schedule after a backoff, a Retry-After or a pause (say the admin's "fetch now").
        changes.update(_schedule(feed, now + timedelta(seconds=feed.interval), Feed.Why.INTERVAL))
    return changes


def _error_changes(feed: Feed, message: str, now: datetime) -> dict:
    errors = feed.error_count + 1
    changes = {"error_count": errors, "last_error": message[:2000], "last_error_at": now}
    if errors >= PAUSE_AFTER_ERRORS:
        if feed.next_fetch_reason != Feed.Why.PAUSED:
            log.warning("feed %s paused after %d errors in a row: %s", feed.pk, errors, message[:200])
        changes.update(_schedule(feed, now + PAUSE_FOR, Feed.Why.PAUSED))
    else:
        # Exponential backoff with jitter, so feeds that failed together do not retry together.
        wait_for = min(timedelta(seconds=feed.interval * 2**errors), MAX_BACKOFF)
        wait_for *= random.uniform(0.8, 1.2)
        changes.update(_schedule(feed, now + wait_for, Feed.Why.BACKOFF))
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


_pool: tuple[int, ThreadPoolExecutor] | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    """This process's download threads, kept across tasks so that their kept-alive connections are reused."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():  # a forked worker process starts its own
            threads = getattr(settings, "FEEDS_FETCH_THREADS", FETCH_THREADS)
            _pool = (os.getpid(), ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fetch"))
        return _pool[1]


# Storing


def content_hash(title: str, link: str, summary_html: str, author: str) -> str:
    return hashlib.sha256("\x1f".join((title, link, summary_html, author)).encode()).hexdigest()


# What store() needs of the rows it already has; an update then writes every visible field.
STORED_FIELDS = (
    "id", "feed_id", "key", "guid", "first_seen", "content_hash", "update_count", "removed_at",
    "seq", "created_seq",
)  # fmt: skip


def store(feed: Feed, parsed: ParsedFeed, fetched_at: datetime | None = None) -> tuple[int, int]:
    """Store a parsed document's entries for `feed`; returns (new, updated).

    The unique (feed, key) constraint is the truth: a row another fetch inserted first is
    skipped, never duplicated. Entries an admin removed stay removed.
    """
    now = timezone.now()
    new = updated = 0
    published = []
    # Oldest first, so the newest entry gets the highest change number and lands on top.
    items = list(reversed(parsed.entries))
    with transaction.atomic():
        if parsed.title and parsed.title != feed.title or parsed.site_url != feed.site_url:
            feed.title, feed.site_url = parsed.title[:500] or feed.title, parsed.site_url
            Feed.objects.filter(pk=feed.pk).update(title=feed.title, site_url=feed.site_url)
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
                    continue  # stored a moment ago by another fetch of this feed
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


def _copy(entry: Entry, item, first_seen) -> None:
    entry.link = item.link
    entry.title = item.title
    entry.summary_html = item.summary_html
    entry.author = item.author
    entry.published = item.published or first_seen
    entry.updated = item.updated or entry.published


# Adding feeds


def find_feed(url: str) -> tuple[str, str]:
    """The feed URL to register for `url`, and the page it was found on if `url` is a web page.

    The URL must pass the guard (BlockedAddress/FetchError otherwise). It is then fetched once: a web
    page that advertises feeds (<link rel="alternate">) gives its first feed instead, and one that
    advertises none is refused (NotAFeed). A URL that cannot be fetched right now is taken as given:
    the feed will show its error.
    """
    url = check_url(url)
    try:
        response = fetch(url)
    except BlockedAddress:
        raise  # it redirects somewhere we may not go: every fetch would fail
    except FetchError:
        return url, ""
    try:
        parse(response.content, url=response.url, content_type=response.headers.get("content-type", ""))
    except NotAFeed as exc:
        if not exc.feed_links:
            raise
        return check_url(exc.feed_links[0]), url
    except ParseError:
        pass  # a feed with a problem: registered, and its error shows on the feed
    return url, ""


def add_feed(url: str, interval: int | None = None) -> tuple[Feed, bool, str]:
    """Register the feed at `url` (see find_feed); returns (feed, created, the page it was found on or "")."""
    url, page = find_feed(url)
    feed, created = Feed.objects.get_or_create(
        url=url, defaults={"interval": interval or settings.FEEDS_DEFAULT_INTERVAL}
    )
    return feed, created, page
