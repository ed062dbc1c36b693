"""The fetch loop: take a batch's leases, download concurrently, parse and store, record the outcomes.

1. Take the feeds' leases (one fetch per feed at a time): rows locked SKIP LOCKED, leases set in one
   short transaction for the whole batch.
2. Download through the guarded client (feeds/fetching.py) in this process's download threads:
   network only, no database, so a batch's feeds download concurrently.
3. Settle in the calling thread: parse (feeds/parsing.py), store (feeds/store.py), then record the
   outcome and give the lease back (feeds/schedule.py), whatever happened. One parse tree at a time
   in memory; outcomes of downloads that finish together are recorded together.
Every stage is bounded in time: a download by FEEDS_TOTAL_TIMEOUT, a parse by FEEDS_PARSE_TIMEOUT of
CPU; past either, the fetch is an error and the feed backs off. Downloads the task gives up (its soft
time limit) are cancelled, so no download thread keeps decoding a body nobody will read.
"""

import hashlib
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from feeds import changelog, schedule, stats, websub, websub_push
from feeds.bounds import Deadline
from feeds.fetching import FetchError, Response, RetryLater, fetch
from feeds.models import Feed
from feeds.parsing import ParseError, parse
from feeds.store import store

log = logging.getLogger(__name__)

# A worker holds a feed at most this long (the tasks' hard time limit): a killed worker's
# lease runs out and the next tick fetches the feed again.
LEASE = timedelta(seconds=90)
# The tasks' soft time limit: above one whole fetch (FEEDS_TOTAL_TIMEOUT, 20 s) plus parsing and storing.
SOFT_TIME_LIMIT = 60
TIME_LIMIT_ERROR = "timed out: the fetch ran past the worker's time limit"
# Outcomes of a batch that are ready are recorded together once no other download finishes within this.
RELEASE_AFTER = 0.05
# Download threads per worker process (FEEDS_FETCH_THREADS).
FETCH_THREADS = 20


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
    schedule.release([(feed.pk, changes)])
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
    deadlines = {feed.pk: Deadline(settings.FEEDS_TOTAL_TIMEOUT) for feed in taken}
    unsettled: dict[Future, Feed] = {
        executor.submit(download, feed, deadlines[feed.pk]): feed for feed in taken
    }
    settled: list[tuple[int, dict]] = []
    try:
        while unsettled:
            done, _ = wait(unsettled, timeout=RELEASE_AFTER if settled else None, return_when=FIRST_COMPLETED)
            if not done:
                schedule.release(settled)  # the others are slow: do not hold these leases meanwhile
                settled = []
            for future in done:
                feed = unsettled[future]
                outcomes[feed.pk], changes = _settle(feed, future.result)
                settled.append((feed.pk, changes))
                del unsettled[future]
    except SoftTimeLimitExceeded:
        log.warning("time limit reached with %d feed(s) of the batch unsettled", len(unsettled))
        for future, feed in unsettled.items():
            # Given up: a download not started never starts, one under way stops at its next check.
            future.cancel()
            deadlines[feed.pk].cancel()
            outcomes[feed.pk], changes = _timed_out(feed)
            settled.append((feed.pk, changes))
    schedule.release(settled)
    return outcomes


def download(feed: Feed, deadline: Deadline | None = None) -> Download:
    """GET the feed's document, conditionally. Touches no database, so it can run in any thread.

    Cancelling `deadline` (FEEDS_TOTAL_TIMEOUT from now by default) stops the download at once.
    """
    started = timezone.now()
    try:
        response = fetch(feed.url, etag=feed.etag, last_modified=feed.last_modified, deadline=deadline)
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
        return Outcome(error=error), schedule.failed(feed, error, timezone.now())
    seconds = (timezone.now() - got.started).total_seconds()
    stats.record_fetch(outcome.kind, seconds, outcome.new, outcome.updated)
    return outcome, changes


def _timed_out(feed: Feed) -> tuple[Outcome, dict]:
    return Outcome(error=TIME_LIMIT_ERROR), schedule.failed(feed, TIME_LIMIT_ERROR, timezone.now())


def _record(feed: Feed, got: Download) -> tuple[Outcome, dict]:
    """The outcome of a download, after storing its entries, and the changes to record on the feed."""
    now = timezone.now()
    changes: dict = {"last_fetched_at": got.started}
    error = got.error
    if isinstance(error, RetryLater) and error.retry_after is not None:
        wait_for, later = schedule.retry_later(feed, error.retry_after, now)
        return Outcome(retry_in=int(wait_for.total_seconds())), changes | later
    if error is not None:
        return Outcome(error=str(error)), changes | schedule.failed(feed, str(error), now)

    response = got.response
    ok = schedule.succeeded(feed, now, response.permanent_redirect)
    validators = {
        "etag": response.headers.get("etag", "")[:500],
        "last_modified": response.headers.get("last-modified", "")[:100],
    }
    if response.not_modified:
        # A 304 need not repeat the validators: keep those we sent unless it gives new ones.
        validators = {name: value for name, value in validators.items() if value}
        return Outcome(not_modified=True), changes | ok | validators | schedule.not_modified()
    body_hash = hashlib.sha256(response.content).hexdigest()
    if body_hash == feed.body_hash:
        # Same bytes as last time from a server without validators: nothing to parse.
        return Outcome(not_modified=True), changes | ok | validators | schedule.not_modified()
    try:
        parsed = parse(
            response.content,
            url=response.url,
            content_type=response.headers.get("content-type", ""),
            timeout=settings.FEEDS_PARSE_TIMEOUT,
        )
    except ParseError as exc:
        # The validators are not kept: the next fetch downloads the document again rather than
        # taking a 304 for a success.
        return Outcome(error=str(exc)), changes | schedule.failed(feed, str(exc), now)
    with changelog.arriving("poll", got.started):
        new, updated = store(feed, parsed, fetched_at=got.started)
    # WebSub: the hubs the feed names now, and whether a poll found what its hub should have pushed.
    websub_push.missed(feed, new, now)
    push = websub.discovered(feed, parsed, response.headers)
    return Outcome(new=new, updated=updated), changes | ok | validators | {"body_hash": body_hash} | push


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
