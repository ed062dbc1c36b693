"""Health for load balancers and operators: /healthz (the process is up), /readyz (it can work)."""

import asyncio
import time
import weakref
from concurrent.futures import ThreadPoolExecutor

from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse

from config.celery import app as celery_app
from feeds.stats import BEAT_KEY, workers_alive
from live import delivery
from live.metrics import has_token

# The beat ticks every 5 s; a tick older than this means the beat or every worker is gone.
BEAT_STALE = 30.0
# However many probes ask, the checks run at most once per this many seconds, on threads of their
# own: never on the executor the hub and the readers' replays use.
CACHE_SECONDS = 5.0
CHECKS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="readyz")
# Workers beat every 10 s (config/celery.py).
WORKER_STALE = 30.0


def healthz(request):
    return JsonResponse({"status": "ok"})


async def readyz(request):
    """200 or 503. The report (each check and its detail) only with the metrics token: failures
    name hosts and errors."""
    healthy, report = await latest_report()
    body = {"status": "ok" if healthy else "unavailable"}
    if has_token(request):
        body["checks"] = report
    return JsonResponse(body, status=200 if healthy else 503)


class Report:
    """The latest report of one event loop, and the run of checks under way, if any."""

    def __init__(self):
        self.value: tuple[bool, dict] | None = None
        self.at = 0.0
        self.running: asyncio.Task | None = None


_reports: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Report]" = weakref.WeakKeyDictionary()


async def latest_report() -> tuple[bool, dict]:
    loop = asyncio.get_running_loop()
    state = _reports.setdefault(loop, Report())
    if state.value is not None and loop.time() - state.at < CACHE_SECONDS:
        return state.value
    if state.running is None:
        state.running = loop.create_task(run_checks())
        state.running.add_done_callback(lambda _: setattr(state, "running", None))
    # Shielded: a probe that gives up does not cancel the run the others wait for.
    state.value = await asyncio.shield(state.running)
    state.at = loop.time()
    return state.value


async def run_checks() -> tuple[bool, dict]:
    loop = asyncio.get_running_loop()
    checks = {
        "database": loop.run_in_executor(CHECKS, check_database),
        "redis": loop.run_in_executor(CHECKS, check_redis),
        "channel_layer": check_channel_layer(),
        "beat": loop.run_in_executor(CHECKS, check_beat),
        "worker": loop.run_in_executor(CHECKS, check_worker),
    }
    results = await asyncio.gather(*(guard(check) for check in checks.values()))
    report = {name: {"ok": ok, "detail": detail} for name, (ok, detail) in zip(checks, results, strict=True)}
    return all(ok for ok, _ in results), report


async def guard(check) -> tuple[bool, str]:
    try:
        return await asyncio.wait_for(check, timeout=3)
    except TimeoutError:
        return False, "timed out"
    except Exception as exc:  # a health check reports failures, it never raises them
        return False, f"{type(exc).__name__}: {exc}"[:200]


def check_database() -> tuple[bool, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    connection.close()  # a thread of the pool: do not keep its connection
    return True, connection.vendor


def check_redis() -> tuple[bool, str]:
    return delivery.transport().check_redis()


async def check_channel_layer() -> tuple[bool, str]:
    return await delivery.transport().round_trip()


def check_beat() -> tuple[bool, str]:
    last = cache.get(BEAT_KEY)
    if last is None:
        return False, "no tick recorded yet"
    age = time.time() - last
    return age < BEAT_STALE, f"last tick {age:.0f} s ago"


def check_worker() -> tuple[bool, str]:
    if celery_app.conf.task_always_eager:
        return True, "tasks run in this process"
    # "Answered": a heartbeat in the last WORKER_STALE seconds, not `celery inspect ping` (remote
    # control is off: config/settings.py).
    alive = workers_alive(WORKER_STALE)
    return bool(alive), f"{len(alive)} worker(s) answered"
