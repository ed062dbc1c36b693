"""Feed health for the admin: which feeds need attention, worst first.

Everything comes from the feed rows plus one aggregate over their entries, added to the feeds' own
query by `annotate`, so a page costs the same queries for ten feeds or ten thousand. `health` and
`attention` are plain functions of those rows and a time.

The states, in the order the health page lists them:
- paused: ten errors in a row; tried again once a day until someone looks;
- erroring: the last fetch failed (longest streak first);
- waiting: the next fetch is held back, by a backoff or by the server's Retry-After;
- stale: fetched fine, but no new entry for much longer than the feed's history says is usual;
- healthy;
- disabled: switched off by an admin, so not waiting for anyone.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, F, Max, Q, QuerySet
from django.utils import timezone
from django.utils.timesince import timesince

from feeds.models import Feed

WEEK = timedelta(days=7)
# Entries first seen this soon after a feed was added are the backlog its first fetch found, not a
# sign of how often it publishes.
BACKLOG = timedelta(minutes=10)
# Stale: silent for STALE_FACTOR times the feed's usual gap between new entries, and for at least
# STALE_AFTER (a wire that publishes every minute may well be quiet for an hour at night).
STALE_FACTOR = 4
STALE_AFTER = timedelta(hours=6)
# A feed that has published nothing new since it was added has no usual gap; this is its bound.
STALE_WITHOUT_HISTORY = WEEK

PAUSED, ERRORING, WAITING, STALE, HEALTHY, DISABLED = (
    "paused",
    "erroring",
    "waiting",
    "stale",
    "healthy",
    "disabled",
)
ORDER = (PAUSED, ERRORING, WAITING, STALE, HEALTHY, DISABLED)


@dataclass
class Health:
    feed: Feed
    state: str
    detail: str  # why it is in that state, in words
    entries_per_day: float | None  # entries first seen in the last 7 days / 7
    not_modified_share: float | None  # 304 answers / fetches; None before the first fetch
    last_entry_at: datetime | None  # when its newest entry was first seen
    usual_gap: timedelta | None  # between new entries, over its history
    overdue: float  # silence / the silence that makes it stale; > 1 is stale

    @property
    def rank(self) -> int:
        return ORDER.index(self.state)


def annotate(feeds: QuerySet, now: datetime | None = None) -> QuerySet:
    """Add what `health` needs from the entries to every feed, as one aggregate in the feeds' query."""
    now = now or timezone.now()
    return feeds.annotate(
        entries_week=Count("entries", filter=Q(entries__first_seen__gte=now - WEEK)),
        entries_new=Count("entries", filter=Q(entries__first_seen__gt=F("created_at") + BACKLOG)),
        last_entry_at=Max("entries__first_seen"),
    )


def not_modified_share(feed: Feed) -> float | None:
    return feed.not_modified_count / feed.fetch_count if feed.fetch_count else None


def entries_per_day(feed: Feed) -> float | None:
    """Needs a feed from `annotate`; None for one that is not (a feed being added)."""
    week = getattr(feed, "entries_week", None)
    return None if week is None else week / 7


def usual_gap(feed: Feed) -> timedelta | None:
    """The mean time between new entries since the feed was added (its first backlog left out)."""
    new, last = getattr(feed, "entries_new", 0), getattr(feed, "last_entry_at", None)
    if not new or last is None:
        return None
    return (last - feed.created_at) / new


def health(feed: Feed, now: datetime | None = None) -> Health:
    """The state of one feed from `annotate`."""
    now = now or timezone.now()
    last_entry_at = getattr(feed, "last_entry_at", None)
    gap = usual_gap(feed)
    silent_for = now - (last_entry_at or feed.created_at)
    stale_after = max(STALE_FACTOR * gap, STALE_AFTER) if gap else STALE_WITHOUT_HISTORY
    overdue = silent_for / stale_after

    if not feed.enabled:
        state, detail = DISABLED, "disabled by an admin"
    elif feed.next_fetch_reason == Feed.Why.PAUSED:
        state, detail = PAUSED, f"paused after {feed.error_count} errors in a row; tried once a day"
    elif feed.error_count:
        state = ERRORING
        detail = f"{feed.error_count} error{'' if feed.error_count == 1 else 's'} in a row"
    elif feed.next_fetch_reason in (Feed.Why.BACKOFF, Feed.Why.RETRY_AFTER):
        state, detail = (
            WAITING,
            f"{feed.get_next_fetch_reason_display()} until {feed.next_fetch_at:%Y-%m-%d %H:%M}",
        )
    elif overdue > 1 and feed.fetch_count:
        state = STALE
        usually = f"usually every {_span(gap)}" if gap else "nothing new since it was added"
        detail = f"no new entry for {_span(silent_for)} ({usually})"
    else:
        state, detail = HEALTHY, "" if feed.fetch_count else "not fetched yet"
    return Health(
        feed=feed,
        state=state,
        detail=detail,
        entries_per_day=entries_per_day(feed),
        not_modified_share=not_modified_share(feed),
        last_entry_at=last_entry_at,
        usual_gap=gap,
        overdue=overdue,
    )


def attention(feeds: QuerySet | None = None, now: datetime | None = None) -> list[Health]:
    """Every feed's health, those that need attention first (see the module docstring). One query."""
    now = now or timezone.now()
    feeds = Feed.objects.all() if feeds is None else feeds
    return sorted((health(feed, now) for feed in annotate(feeds, now)), key=lambda h: _sort_key(h, now))


def _sort_key(health: Health, now: datetime) -> tuple:
    feed = health.feed
    if health.state in (PAUSED, ERRORING):
        within = -feed.error_count
    elif health.state == WAITING:
        within = -(feed.next_fetch_at - now).total_seconds()  # the longest wait first
    elif health.state == STALE:
        within = -health.overdue
    else:
        within = 0
    return health.rank, within, str(feed).lower(), feed.pk


def _span(delta: timedelta) -> str:
    if delta < timedelta(minutes=1):
        return f"{max(delta.total_seconds(), 0):.0f} s"
    now = timezone.now()
    return timesince(now - delta, now, depth=1)
