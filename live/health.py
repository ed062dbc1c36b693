"""Health for load balancers and operators: /healthz (the process is up), /readyz (it can work)."""

import asyncio
import time

from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse

from config.celery import app as celery_app
from feeds.stats import BEAT_KEY
from live import delivery

# The beat ticks every 5 s; a tick older than this means the beat or every worker is gone.
BEAT_STALE = 30.0


def healthz(request):
    return JsonResponse({"status": "ok"})


async def readyz(request):
    checks = {
        "database": sync_to_async(check_database, thread_sensitive=False)(),
        "redis": sync_to_async(check_redis, thread_sensitive=False)(),
        "channel_layer": check_channel_layer(),
        "beat": sync_to_async(check_beat, thread_sensitive=False)(),
        "worker": sync_to_async(check_worker, thread_sensitive=False)(),
    }
    results = await asyncio.gather(*(guard(check) for check in checks.values()))
    report = {name: {"ok": ok, "detail": detail} for name, (ok, detail) in zip(checks, results, strict=True)}
    healthy = all(ok for ok, _ in results)
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": report}, status=200 if healthy else 503
    )


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
    replies = celery_app.control.ping(timeout=1.0)
    return bool(replies), f"{len(replies)} worker(s) answered"
