from celery import shared_task

from feeds.ingest import LEASE, claim_due_feeds, fetch_and_store


@shared_task(ignore_result=True)
def dispatch_due_feeds() -> int:
    """Queue a fetch for every feed that is due; the beat runs this every 5 seconds."""
    due = claim_due_feeds()
    for feed_id, interval in due:
        # A fetch still queued when the feed is due again is stale: the next tick sends a fresh one.
        fetch_feed.apply_async((feed_id,), expires=max(interval, 5))
    return len(due)


@shared_task(ignore_result=True, acks_late=True, soft_time_limit=60, time_limit=LEASE.total_seconds())
def fetch_feed(feed_id: int) -> str:
    """Fetch one feed and store what is new. Safe to run twice: a second run finds the lease taken."""
    return str(fetch_and_store(feed_id))
