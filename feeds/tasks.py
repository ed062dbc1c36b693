import time
from collections import Counter

from celery import shared_task
from django.core.cache import cache

from feeds import websub
from feeds.ingest import LEASE, SOFT_TIME_LIMIT, fetch_and_store, fetch_and_store_many
from feeds.retention import prune_entries
from feeds.schedule import batches, claim_due_feeds
from feeds.stats import BEAT_KEY

# A worker that dies mid-fetch leaves the lease to run out; the hard limit is the lease.
LIMITS = {"soft_time_limit": SOFT_TIME_LIMIT, "time_limit": LEASE.total_seconds()}


@shared_task(ignore_result=True)
def dispatch_due_feeds() -> int:
    """Queue fetches, in batches, for every feed that is due; the beat runs this every 5 seconds."""
    # Seen by /readyz: a recent tick proves the beat fires and a worker runs what it sends.
    cache.set(BEAT_KEY, time.time(), timeout=3600)
    due = claim_due_feeds()
    # One broker connection for the tick's batches (settings: publishing connections are not kept).
    with fetch_feeds.app.producer_or_acquire() as producer:
        for feed_ids, interval in batches(due):
            # A batch still queued when its feeds are due again is stale: the next tick sends a fresh one.
            fetch_feeds.apply_async((feed_ids,), expires=max(interval, 5), producer=producer)
    return len(due)


@shared_task(ignore_result=True, acks_late=True, **LIMITS)
def fetch_feeds(feed_ids: list[int]) -> str:
    """Fetch a batch of due feeds concurrently, each with its own lease and outcome. Safe to run twice."""
    outcomes = fetch_and_store_many(feed_ids, enabled_only=True)
    counts = Counter(outcome.kind for outcome in outcomes.values())
    return ", ".join(f"{count} {kind}" for kind, count in sorted(counts.items()))


@shared_task(ignore_result=True, acks_late=True, **LIMITS)
def fetch_feed(feed_id: int) -> str:
    """Fetch one feed now (the admin's "fetch now"). Safe to run twice: a second run finds the lease taken."""
    return str(fetch_and_store(feed_id))


@shared_task(ignore_result=True, soft_time_limit=300, time_limit=360)
def prune_old_entries() -> int:
    """Blank entries older than FEEDS_RETENTION_DAYS, keeping their identity; the beat runs it hourly."""
    return prune_entries()


@shared_task(ignore_result=True, soft_time_limit=30, time_limit=40)
def maintain_subscriptions() -> int:
    """Subscribe, renew and unsubscribe WebSub subscriptions as due; the beat runs this every 5 seconds."""
    due = websub.maintain()
    for subscription_id in due:
        request_subscription.apply_async((subscription_id,), expires=websub.CLAIM_FOR.total_seconds())
    return len(due)


@shared_task(ignore_result=True, acks_late=True, soft_time_limit=30, time_limit=60)
def request_subscription(subscription_id: int) -> str:
    """Send one subscription's due request to its hub. Safe to run twice: the hub sees the same request."""
    return websub.send_request(subscription_id)
