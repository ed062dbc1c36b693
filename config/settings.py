"""Livelog settings: one module, read from the environment.

The defaults run as-is for `make run` (SQLite, in-memory channel layer, tasks in-process).
Production sets DATABASE_URL, REDIS_URL, SECRET_KEY and ALLOWED_HOSTS; see README.md.
"""

import os
import ssl
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# --- Core
DEBUG = env_bool("DEBUG")
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY is required when DEBUG is off.")
    SECRET_KEY = "insecure-development-key-only-for-DEBUG"  # noqa: S105 - DEBUG only
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
# Public URL of this Livelog, named in the User-Agent so publishers can find us.
SITE_URL = os.environ.get("SITE_URL", "https://github.com/livelog/livelog")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_celery_beat",
    "feeds",
    "blogs",
    "live",
    "editors",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "live.middleware.ContentSecurityPolicyMiddleware",
    "live.middleware.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database
DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'livelog.sqlite3'}",
        conn_max_age=int(os.environ.get("CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Embedded mode: threads share one file; wait for the writer instead of failing at once.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# --- Redis: one URL feeds the Celery broker, the channel layer, the cache, the shared metrics and the
# health checks; unset means embedded mode. rediss:// is TLS, certificate checked against the system's
# CAs unless REDIS_TLS_VERIFY is off (Heroku Redis presents a self-signed certificate and rotates
# REDIS_URL itself, so the switch cannot live in the URL).
REDIS_URL = os.environ.get("REDIS_URL", "")
EMBEDDED = not REDIS_URL
REDIS_TLS = REDIS_URL.startswith("rediss://")
REDIS_TLS_VERIFY = env_bool("REDIS_TLS_VERIFY", True)
# What every redis-py client is made with (config/redis.py, the channel layer, the cache).
REDIS_OPTIONS = {"ssl_cert_reqs": "required" if REDIS_TLS_VERIFY else "none"} if REDIS_TLS else {}

if EMBEDDED:
    # Everything in one process: events go from task threads to the hub in memory (live/delivery.py).
    CHANNEL_LAYERS = {}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
else:
    CHANNEL_LAYERS = {
        # Only the live delivery's (live/delivery.py): with no "default", consumers get no layer.
        "live": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py 8 times out idle reads after 5 s, which would close every idle socket.
                "hosts": [{"address": REDIS_URL, "socket_timeout": None, **REDIS_OPTIONS}],
                "prefix": os.environ.get("CHANNEL_LAYER_PREFIX", "livelog"),
                # One channel per web process receives every event: room for a burst.
                "capacity": 10000,
                "expiry": 60,
            },
        }
    }
    # One small shared cache: the beat's heartbeat, seen by every process.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": os.environ.get("CHANNEL_LAYER_PREFIX", "livelog"),
            # The process's one pool (config/redis.py), shared with the metrics and health checks.
            "OPTIONS": {"pool_class": "config.redis.SharedPool"},
        }
    }

# --- Celery
CELERY_BROKER_URL = REDIS_URL or "memory://localhost/"
if REDIS_TLS:
    CELERY_BROKER_USE_SSL = {"ssl_cert_reqs": ssl.CERT_REQUIRED if REDIS_TLS_VERIFY else ssl.CERT_NONE}
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ALWAYS_EAGER = EMBEDDED
CELERY_TASK_EAGER_PROPAGATES = EMBEDDED
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 4
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# No remote control: its subscription is a Redis connection per worker, and /readyz hears workers
# through their heartbeat instead (config/celery.py). Heroku Redis Mini accepts 20 clients.
CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
# Publishing connections are opened for the send and closed after it, not kept per process: the beat
# and each worker process would otherwise hold two each, idle between ticks.
CELERY_BROKER_POOL_LIMIT = 0
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "config.schedulers:Scheduler"  # django-celery-beat's, with no idle connection
CELERY_BEAT_SCHEDULE = {
    "dispatch-due-feeds": {
        "task": "feeds.tasks.dispatch_due_feeds",
        "schedule": 5.0,
        # A tick that waited in the queue longer than one period is useless: let it expire
        # rather than stampede when a worker returns. (django-celery-beat keeps
        # expire_seconds; it drops options.expires.)
        "options": {"expire_seconds": 5},
    },
    "update-blog-states": {
        "task": "blogs.tasks.update_blog_states",
        "schedule": 5.0,
        "options": {"expire_seconds": 5},
    },
    "maintain-subscriptions": {
        "task": "feeds.tasks.maintain_subscriptions",
        "schedule": 5.0,
        "options": {"expire_seconds": 5},
    },
    "prune-old-entries": {
        "task": "feeds.tasks.prune_old_entries",
        "schedule": 3600.0,
        "options": {"expire_seconds": 3600},
    },
}

# --- Feeds
# Fetches may reach loopback and private addresses only when this is on (make run, tests).
FEEDS_ALLOW_PRIVATE_NETWORKS = env_bool("FEEDS_ALLOW_PRIVATE_NETWORKS")
FEEDS_DEFAULT_INTERVAL = int(os.environ.get("FEEDS_DEFAULT_INTERVAL", "5"))
FEEDS_USER_AGENT = os.environ.get("FEEDS_USER_AGENT", f"Livelog/1.0 (+{SITE_URL})")
FEEDS_CONNECT_TIMEOUT = float(os.environ.get("FEEDS_CONNECT_TIMEOUT", "5"))
FEEDS_READ_TIMEOUT = float(os.environ.get("FEEDS_READ_TIMEOUT", "10"))
FEEDS_TOTAL_TIMEOUT = float(os.environ.get("FEEDS_TOTAL_TIMEOUT", "20"))
FEEDS_MAX_BYTES = int(os.environ.get("FEEDS_MAX_BYTES", str(10 * 1024 * 1024)))
# Seconds of CPU parsing one document may take; past it the fetch is an error (and backs off).
FEEDS_PARSE_TIMEOUT = float(os.environ.get("FEEDS_PARSE_TIMEOUT", "10"))
# The tick sends due feeds in batches; each batch is fetched on this many threads of a worker.
FEEDS_BATCH_SIZE = int(os.environ.get("FEEDS_BATCH_SIZE", "20"))
FEEDS_FETCH_THREADS = int(os.environ.get("FEEDS_FETCH_THREADS", "20"))
# Entries first seen longer ago than this lose their content (0 keeps everything).
FEEDS_RETENTION_DAYS = int(os.environ.get("FEEDS_RETENTION_DAYS", "30"))
# WebSub: subscribe to the hubs feeds advertise (only when a hub can reach SITE_URL; see README).
FEEDS_WEBSUB = env_bool("FEEDS_WEBSUB", True)
# Lease asked of hubs, in seconds (they may grant less); renewed at about 80% of what they grant.
FEEDS_WEBSUB_LEASE = int(os.environ.get("FEEDS_WEBSUB_LEASE", str(7 * 24 * 3600)))
# A feed a hub pushes is still polled, this often (seconds), as the safety net.
FEEDS_PUSHED_INTERVAL = int(os.environ.get("FEEDS_PUSHED_INTERVAL", "60"))
# Serve the built-in demo feeds at /demo/feed.xml and /demo/agency.xml, and run the demo live blog.
LIVELOG_DEMO = env_bool("LIVELOG_DEMO")
if LIVELOG_DEMO:
    # The demo desk's posts in the demo blog (editors/demo.py).
    CELERY_BEAT_SCHEDULE["demo-posts"] = {
        "task": "editors.tasks.post_demo_update",
        "schedule": 20.0,
        "options": {"expire_seconds": 20},
    }

# --- Live delivery
# Write each event's frame, encoded and compressed once, straight to uvicorn's sockets (live/frames.py);
# off, or when uvicorn's private protocol cannot be imported, events take the standard ASGI path.
LIVE_SHARED_FRAMES = env_bool("LIVE_SHARED_FRAMES", True)
# Bytes of recent events (every encoded variant) each web process keeps for readers who resume.
LIVE_HISTORY_BYTES = int(os.environ.get("LIVE_HISTORY_BYTES", str(64 * 1024 * 1024)))

# --- Security
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

# --- The web process's bounds (live/server.py): connections open at once (never more than the
# file descriptors allow), per client address (0: no limit), and seconds to send request headers.
WEB_MAX_CONNECTIONS = int(os.environ.get("WEB_MAX_CONNECTIONS", "10000"))
WEB_MAX_CONNECTIONS_PER_CLIENT = int(os.environ.get("WEB_MAX_CONNECTIONS_PER_CLIENT", "100"))
# Proxies in front of the web process that append the address they saw to X-Forwarded-For (Heroku's
# router: 1; a CDN in front of Heroku: 2). The client is the entry this far from the right.
WEB_PROXY_HOPS = max(1, int(os.environ.get("WEB_PROXY_HOPS", "1")))
WEB_HEADER_TIMEOUT = float(os.environ.get("WEB_HEADER_TIMEOUT", "10"))
# An API page stops at the entry that takes it past this many bytes (and links to the rest).
API_PAGE_MAX_BYTES = int(os.environ.get("API_PAGE_MAX_BYTES", str(1024 * 1024)))

# --- Operations
# /metrics answers only with this bearer token; unset, it is not exposed at all.
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")

# --- Logging: one line per record on stdout, for the platform's log router.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "line": {"format": "level=%(levelname)s logger=%(name)s %(message)s"},
    },
    # A line repeated faster than a few times in 10 s is counted, not written: a flood of
    # failures (thousands a second under attack) cannot fill the disk or hold the event loop.
    "filters": {"repeats": {"()": "config.logfilter.RepeatFilter"}},
    "handlers": {"stdout": {"class": "logging.StreamHandler", "formatter": "line", "filters": ["repeats"]}},
    "root": {"handlers": ["stdout"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "httpx": {"level": "WARNING"},
        # uvicorn's own lines ("Invalid HTTP request received." per bad request) go through it too;
        # its level stays uvicorn's (--log-level), its access log (uvicorn.access) untouched.
        "uvicorn.error": {"handlers": ["stdout"], "propagate": False},
    },
}
