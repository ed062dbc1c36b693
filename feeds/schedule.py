"""When each feed is fetched next: claiming due feeds in batches, the politeness rules, and the release.

Every fetch is conditional (ETag, Last-Modified; an unchanged body is not parsed again). A 429 or 503
with Retry-After moves the next fetch to when the server asked (capped), and is not an error. Any other
failure backs off exponentially with jitter; after PAUSE_AFTER_ERRORS in a row the feed is paused
(tried once a day) and flagged in the admin. A feed is never dropped.
"""

import logging
import math
import random
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from feeds.fetching import FetchError, check_url
from feeds.models import Feed

log = logging.getLogger(__name__)

MAX_BACKOFF = timedelta(hours=1)
MAX_RETRY_AFTER = timedelta(hours=6)
PAUSE_AFTER_ERRORS = 10
PAUSE_FOR = timedelta(days=1)
# A permanent redirect is stored once seen this many times in a row.
REDIRECTS_TO_MOVE = 3
# Ticks and due times both drift by milliseconds: a feed due every 5 s must not slip to every 10 s.
DUE_SLACK = timedelta(seconds=1)
# A column incremented by one in release().
INCREMENT = object()
# At most this many feeds are claimed by one tick.
MAX_DUE = 10_000
# Feeds per fetch_feeds task (FEEDS_BATCH_SIZE).
BATCH_SIZE = 20
# A tick with few due feeds still spreads them over this many tasks, so every worker process helps.
SPREAD = 8


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
            .values_list("id", "interval", "pushed_until")[:limit]
        )
        # A feed a hub pushes is polled only as a safety net, less often (FEEDS_PUSHED_INTERVAL).
        pushed = settings.FEEDS_PUSHED_INTERVAL
        due = [
            (pk, max(interval, pushed) if until and until > now else interval) for pk, interval, until in due
        ]
        for interval, ids in _by_interval(due).items():
            Feed.objects.filter(id__in=ids).update(next_fetch_at=now + timedelta(seconds=interval))
    return due  # (feed id, interval) pairs


def batches(due: list[tuple[int, int]], size: int | None = None) -> list[tuple[list[int], int]]:
    """Split claimed (feed id, interval) pairs into (feed ids, interval) batches of one interval each,
    of at most `size` feeds, spreading a small tick over SPREAD batches or more."""
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


# What a fetch's outcome changes on its feed (recorded by release())


def retry_later(feed: Feed, retry_after: int, now: datetime) -> tuple[timedelta, dict]:
    """The server said when to come back: not the feed's fault, so no error and no backoff."""
    wait_for = min(timedelta(seconds=retry_after), MAX_RETRY_AFTER)
    wait_for = max(wait_for, timedelta(seconds=feed.interval))
    return wait_for, _schedule(feed, now + wait_for, Feed.Why.RETRY_AFTER)


def succeeded(feed: Feed, now: datetime, redirect: str | None) -> dict:
    changes = {"error_count": 0} if feed.error_count else {}
    if feed.next_fetch_reason != Feed.Why.INTERVAL:
        # Back on schedule after a backoff, a Retry-After or a pause (say the admin's "fetch now").
        changes.update(_schedule(feed, now + timedelta(seconds=feed.interval), Feed.Why.INTERVAL))
    return changes | _redirect_changes(feed, redirect)


def not_modified() -> dict:
    return {"not_modified_count": INCREMENT}


def failed(feed: Feed, message: str, now: datetime) -> dict:
    errors = feed.error_count + 1
    changes = {"error_count": errors, "last_error": message[:2000], "last_error_at": now}
    if errors >= PAUSE_AFTER_ERRORS:
        if feed.next_fetch_reason != Feed.Why.PAUSED:
            log.warning("feed %s paused after %d errors in a row: %s", feed.pk, errors, message[:200])
        changes.update(_schedule(feed, now + PAUSE_FOR, Feed.Why.PAUSED))
    else:
        # Jitter, so that feeds that failed together do not retry together.
        wait_for = min(timedelta(seconds=feed.interval * 2**errors), MAX_BACKOFF)
        wait_for *= random.uniform(0.8, 1.2)
        changes.update(_schedule(feed, now + wait_for, Feed.Why.BACKOFF))
    return changes


def _schedule(feed: Feed, when: datetime, why: str) -> dict:
    # A disabled feed fetched by hand keeps its schedule: it is not fetched until enabled again.
    return {"next_fetch_at": when, "next_fetch_reason": why} if feed.enabled else {}


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


def release(settled: list[tuple[int, dict]]) -> None:
    """Record each fetch's changes on its feed, count the fetch and give the lease back.

    One transaction for the batch: plain SQL, one executemany per set of changed columns (the ORM
    spends ~0.7 ms of CPU on each UPDATE, which at 200 fetches a second is most of the cost of a
    fetch; see bench/ingest_scale.py). Values that do not fit their column are refused first, with
    an error on the feed; if the batch fails anyway, each feed is recorded on its own, so a
    neighbour's problem never leaves a feed leased and its fetch unrecorded.
    """
    if not settled:
        return
    settled = [(pk, _fitting(pk, changes)) for pk, changes in settled]
    try:
        _release_batch(settled)
    except DatabaseError:
        log.exception("recording a batch of %d fetches failed: recording each on its own", len(settled))
        for pk, changes in settled:
            _release_alone(pk, changes)


def _release_batch(settled: list[tuple[int, dict]]) -> None:
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


def _release_alone(feed_id: int, changes: dict) -> None:
    try:
        _release_batch([(feed_id, changes)])
    except DatabaseError as exc:
        # Whatever this feed's changes hold, its lease comes back and the failure is on it.
        log.exception("recording the fetch of feed %s failed", feed_id)
        message = f"internal error: the fetch's outcome could not be recorded ({type(exc).__name__})"
        Feed.objects.filter(pk=feed_id).update(
            lease_until=None,
            fetch_count=F("fetch_count") + 1,
            error_count=F("error_count") + 1,
            last_error=message,
            last_error_at=timezone.now(),
        )


def _fitting(feed_id: int, changes: dict) -> dict:
    """`changes` without the values too long for their column, and an error on the feed that names them."""
    refused = {}
    for name, value in changes.items():
        limit = Feed._meta.get_field(name).max_length
        if isinstance(value, str) and limit and len(value) > limit:
            refused[name] = f"{name} ({len(value)} characters; the column holds {limit})"
    if not refused:
        return changes
    message = "refused: too long to record: " + ", ".join(refused.values())
    log.warning("feed %s: %s", feed_id, message)
    kept = {name: value for name, value in changes.items() if name not in refused}
    if "url" in refused:  # not moving after all
        kept.pop("redirect_url", None)
        kept.pop("redirect_count", None)
    return kept | {"last_error": message[:2000], "last_error_at": timezone.now()}


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
