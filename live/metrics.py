"""GET /metrics for Prometheus, behind METRICS_TOKEN (Authorization: Bearer <token>).

Fetch and store numbers come from the workers through feeds.stats (shared by every process);
connected clients and delivery latency are this web process's own.
"""

import hmac

from django.conf import settings
from django.http import Http404, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from feeds import stats, websub
from live.frames import delivery_path

OUTCOMES = ("stored", "not_modified", "error", "retry_later", "skipped")
PUSH_OUTCOMES = ("stored", "invalid", "bad_signature", "bad_algorithm", "unsigned", "gone", "too_large")
SHARED_STAGES = ("published_to_fetched", "fetched_to_committed")

registry = CollectorRegistry()
connected_clients = Gauge(
    "livelog_connected_clients",
    "Readers connected to this web process (WebSocket and SSE).",
    registry=registry,
)
history_bytes = Gauge(
    "livelog_history_bytes",
    "Bytes of recent events this web process keeps for readers who resume (LIVE_HISTORY_BYTES).",
    registry=registry,
)
arrival_to_delivery = Histogram(
    "livelog_entry_arrival_to_delivery_seconds",
    "From a stored entry's content arriving (a hub's push, a fetch's response) to this web process "
    "handing it to its readers.",
    labelnames=["via"],
    buckets=stats.STAGE_BUCKETS,
    registry=registry,
)
delivered = Histogram(
    "livelog_entry_delivered_seconds",
    "From an entry's commit to this web process handing it to its readers.",
    buckets=stats.STAGE_BUCKETS,
    registry=registry,
)


class SharedCollector:
    """Turns the shared counters into Prometheus families at scrape time."""

    def collect(self):
        values = stats.read()
        fetches = CounterMetricFamily("livelog_fetches", "Feed fetches by outcome.", labels=["outcome"])
        for outcome in OUTCOMES:
            fetches.add_metric([outcome], values.get(f"fetch:outcome:{outcome}", 0))
        yield fetches
        stored = CounterMetricFamily(
            "livelog_entries_stored", "Entries stored, new or updated.", labels=["kind"]
        )
        for kind in ("new", "updated"):
            stored.add_metric([kind], values.get(f"entries:{kind}", 0))
        yield stored
        duration = HistogramMetricFamily(
            "livelog_fetch_duration_seconds", "Fetch, parse and store of one feed."
        )
        duration.add_metric([], *histogram(values, "fetch_duration", stats.FETCH_BUCKETS))
        yield duration
        stages = HistogramMetricFamily(
            "livelog_entry_stage_seconds", "Latency of each stage of a new entry.", labels=["stage"]
        )
        for stage in SHARED_STAGES:
            stages.add_metric([stage], *histogram(values, f"stage:{stage}", stats.STAGE_BUCKETS))
        yield stages
        yield from push_families(values)


def push_families(values: dict):
    """WebSub: pushes and verifications by outcome, push latency, leases by state, misses per hub."""
    pushes = CounterMetricFamily("livelog_pushes", "WebSub pushes received, by outcome.", labels=["outcome"])
    for outcome in PUSH_OUTCOMES:
        pushes.add_metric([outcome], values.get(f"push:outcome:{outcome}", 0))
    yield pushes
    verifications = CounterMetricFamily(
        "livelog_push_verifications", "Hubs' verifications of intent, by outcome.", labels=["outcome"]
    )
    for outcome in ("confirmed", "refused", "denied"):
        verifications.add_metric([outcome], values.get(f"verify:outcome:{outcome}", 0))
    yield verifications
    latency = HistogramMetricFamily(
        "livelog_push_stored_seconds", "From a push's arrival to the commit of what it brought."
    )
    latency.add_metric([], *histogram(values, "push:received_to_committed", stats.FETCH_BUCKETS))
    yield latency
    entries = CounterMetricFamily("livelog_entries_pushed", "New entries that arrived by push.")
    entries.add_metric([], values.get("entries:pushed", 0))
    yield entries
    missed = CounterMetricFamily(
        "livelog_push_missed", "New entries a poll found that the feed's hub had not pushed.", labels=["hub"]
    )
    for name, count in sorted(values.items()):
        if name.startswith("push:missed:"):
            missed.add_metric([name.removeprefix("push:missed:")], count)
    yield missed
    leases = GaugeMetricFamily("livelog_push_leases", "WebSub subscriptions by state.", labels=["state"])
    for state, count in websub.counts_by_state().items():
        leases.add_metric([state], count)
    yield leases


def histogram(values: dict, name: str, bounds) -> tuple[list, float]:
    buckets = [(str(float(bound)), values.get(f"{name}:le:{bound}", 0)) for bound in bounds]
    buckets.append(("+Inf", values.get(f"{name}:count", 0)))
    return buckets, values.get(f"{name}:sum_us", 0) / 1_000_000


class DeliveryPathCollector:
    """Which way this process writes live events, read at scrape time (live/frames.py)."""

    def collect(self):
        path = GaugeMetricFamily(
            "livelog_delivery_path",
            "1 for the way this web process writes live events: shared_frames (encoded and "
            "compressed once, written to uvicorn's sockets) or asgi (the standard ASGI send).",
            labels=["path"],
        )
        in_use = delivery_path()
        for name in ("shared_frames", "asgi"):
            path.add_metric([name], 1 if name == in_use else 0)
        yield path


registry.register(SharedCollector())
registry.register(DeliveryPathCollector())


def has_token(request) -> bool:
    """The request carries `Authorization: Bearer $METRICS_TOKEN` (never true when it is unset)."""
    token = settings.METRICS_TOKEN
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    return bool(token) and hmac.compare_digest(given.encode(), token.encode())


def metrics(request):
    if not settings.METRICS_TOKEN:
        raise Http404  # not configured: not exposed
    if not has_token(request):
        return HttpResponse("a valid bearer token is required\n", status=401, content_type="text/plain")
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
