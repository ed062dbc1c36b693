"""One Redis connection pool per process for every synchronous client: cache, metrics, health.

Django makes a cache object per thread, and each would otherwise open its own pool, so a web
process's health checks and a worker's threads would each hold a connection of their own (Heroku
Redis Mini accepts 20 clients in all). The pool blocks rather than grows past its size.
"""

import os
import threading

import redis
from django.conf import settings

# Connections per process at most; a caller waits up to TIMEOUT for one to come back.
SIZE = 1
TIMEOUT = 2

_pool: redis.BlockingConnectionPool | None = None
_made_for = None
_lock = threading.Lock()


def pool() -> redis.BlockingConnectionPool:
    global _pool, _made_for
    # Made again in a forked child, and when settings change (tests).
    wanted = (os.getpid(), settings.REDIS_URL, tuple(settings.REDIS_OPTIONS.items()))
    with _lock:
        if _made_for != wanted:
            _made_for = wanted
            _pool = redis.BlockingConnectionPool.from_url(
                settings.REDIS_URL,
                max_connections=SIZE,
                timeout=TIMEOUT,
                socket_timeout=2,
                socket_connect_timeout=2,
                **settings.REDIS_OPTIONS,
            )
        return _pool


def client() -> redis.Redis:
    return redis.Redis(connection_pool=pool())


class SharedPool(redis.BlockingConnectionPool):
    """The cache's pool_class: every cache object of the process gets the process's pool."""

    @classmethod
    def from_url(cls, url, **options):
        return pool()


def transient() -> redis.Redis:
    """A client on a connection of its own, closed with it: for talking to Redis every few seconds
    (a worker's heartbeat) without holding a connection in between."""
    return redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2, **settings.REDIS_OPTIONS
    )
