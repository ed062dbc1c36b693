"""Counters and histograms that workers share with the web process's /metrics.

Workers are separate processes (separate machines on a Heroku-style platform), so their numbers
go to one Redis hash, one pipelined HINCRBY per fetch; /metrics reads the hash. When everything runs
in one process (`make run`), a dict does.
"""

import contextlib
import threading
import time
from collections import Counter

from django.conf import settings

from config import redis

KEY = "livelog:metrics"
# The last tick of the beat (a time.time() value in the cache), read by /readyz.
BEAT_KEY = "livelog:beat:last-tick"
# Each worker's last heartbeat (config/celery.py), read by /readyz.
WORKERS_KEY = "livelog:workers"
# Seconds. Fetches take milliseconds to the total deadline; stages run from seconds to hours.
FETCH_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20)
STAGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400)


class LocalCounters:
    """Everything in one process (`make run`): a dict."""

    def __init__(self):
        self.counts: Counter = Counter()
        self.lock = threading.Lock()

    def add(self, fields: Counter) -> None:
        with self.lock:
            self.counts.update(fields)

    def read(self) -> dict[str, int]:
        with self.lock:
            return dict(self.counts)


class RedisCounters:
    """Separate processes: one Redis hash, one pipelined HINCRBY per fetch."""

    def add(self, fields: Counter) -> None:
        pipe = redis.client().pipeline(transaction=False)
        for name, value in fields.items():
            pipe.hincrby(KEY, name, value)
        pipe.execute()

    def read(self) -> dict[str, int]:
        return {key.decode(): int(value) for key, value in redis.client().hgetall(KEY).items()}


_counters: LocalCounters | RedisCounters | None = None


def counters() -> LocalCounters | RedisCounters:
    """Chosen once: the counters are wherever the processes can all see them."""
    global _counters
    if _counters is None:
        _counters = RedisCounters() if settings.REDIS_URL else LocalCounters()
    return _counters


def observe(fields: Counter) -> None:
    """Add to the shared counters. Never raises: metrics must not break a fetch."""
    if not fields:
        return
    with contextlib.suppress(Exception):  # a lost sample is better than a failed fetch
        counters().add(fields)


def histogram_fields(name: str, seconds: float, buckets) -> Counter:
    fields = Counter({f"{name}:count": 1, f"{name}:sum_us": int(seconds * 1_000_000)})
    for bound in buckets:
        if seconds <= bound:
            fields[f"{name}:le:{bound}"] += 1
    return fields


def read() -> dict[str, int]:
    return counters().read()


def record_fetch(kind: str, seconds: float, new: int, updated: int) -> None:
    fields = histogram_fields("fetch_duration", seconds, FETCH_BUCKETS)
    fields[f"fetch:outcome:{kind.replace('-', '_')}"] += 1
    if new:
        fields["entries:new"] += new
    if updated:
        fields["entries:updated"] += updated
    observe(fields)


def record_new_entries(published: list, fetched_at, committed_at) -> None:
    """Stage latencies of new entries: published by the feed → fetched → committed."""
    fields = Counter()
    committed = max(0.0, (committed_at - fetched_at).total_seconds())
    for when in published:
        fields += histogram_fields("stage:fetched_to_committed", committed, STAGE_BUCKETS)
        if when is not None:
            ago = max(0.0, (fetched_at - when).total_seconds())
            fields += histogram_fields("stage:published_to_fetched", ago, STAGE_BUCKETS)
    observe(fields)


def record_push_stored(received_at, committed_at, new: int) -> None:
    """A valid push was stored: from its POST's arrival to the commit of what it brought."""
    seconds = max(0.0, (committed_at - received_at).total_seconds())
    fields = histogram_fields("push:received_to_committed", seconds, FETCH_BUCKETS)
    if new:
        fields["entries:pushed"] += new
    observe(fields)


def record_worker_alive(hostname: str) -> None:
    """Never raises: if Redis is away, /readyz says so through its own check."""
    # The worker's main process uses Redis for nothing else: it holds no connection in between.
    with contextlib.suppress(Exception), redis.transient() as client:
        client.hset(WORKERS_KEY, hostname, time.time())


def workers_alive(within: float) -> list[str]:
    """Workers heard from in the last `within` seconds; forgets those silent for an hour."""
    client = redis.client()
    now = time.time()
    ages = {hostname.decode(): now - float(seen) for hostname, seen in client.hgetall(WORKERS_KEY).items()}
    gone = [hostname for hostname, age in ages.items() if age > 3600]
    if gone:
        client.hdel(WORKERS_KEY, *gone)
    return [hostname for hostname, age in ages.items() if age < within]
