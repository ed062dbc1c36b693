import asyncio
import gc
import os
import signal
import time
import uuid

import pytest
import redis
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.db import connections

from tests.feedserver import FeedServer
from tests.procs import Proc, free_port, http_ok, run_procfile, wait_until

TEST_REDIS_URL = os.environ.get("LIVELOG_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
# The stack's web processes show /readyz's details (and /metrics) to this bearer token.
METRICS_TOKEN = "test-metrics-token"  # noqa: S105


@pytest.fixture
def feed_server():
    server = FeedServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """The test database, dropped at the end without "being accessed by other users"."""
    yield
    # Async tests' thread-sensitive sync_to_async calls (and Django's ASGI handler) run in asgiref's
    # one shared thread, whose connection outlives them: closed from there (connections are per thread).
    asyncio.run(sync_to_async(connections.close_all)())
    # The hubs' executor threads of finished tests' event loops are gone, but a connection object
    # is a reference cycle: its socket stays open until a collection.
    gc.collect()
    if connections["default"].vendor == "postgresql":
        with django_db_blocker.unblock(), connections["default"].cursor() as cursor:
            # The backends of processes a test has just stopped may take a moment to go.
            deadline = time.monotonic() + 5
            while _other_sessions(cursor) and time.monotonic() < deadline:
                time.sleep(0.1)
            # What is left was opened in a thread with a running event loop (Playwright's, an async
            # test's), where Django keeps one connection per context and none closes it: this
            # database is about to be dropped, so end them.
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        connections["default"].close()


def _other_sessions(cursor) -> int:
    cursor.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    return cursor.fetchone()[0]


@pytest.fixture
def published():
    """published() -> the events this process published since the last call (in-memory delivery)."""
    from live import delivery

    messages = []
    stop = delivery.transport().listen(messages.extend)

    def take():
        taken = messages[:]
        del messages[: len(taken)]
        return taken

    yield take
    stop()


@pytest.fixture
def allow_private(settings):
    """Tests of behaviour other than the address guard fetch from 127.0.0.1."""
    settings.FEEDS_ALLOW_PRIVATE_NETWORKS = True


@pytest.fixture(scope="session")
def static_files():
    """Production settings serve hashed static files: build them once."""
    call_command("collectstatic", "--noinput", verbosity=0)


@pytest.fixture
def redis_url():
    """The shared Redis, in a database of the tests' own, emptied before and after."""
    client = redis.Redis.from_url(TEST_REDIS_URL)
    client.flushdb()
    yield TEST_REDIS_URL
    client.flushdb()
    client.close()


@pytest.fixture
def stack(transactional_db, settings, redis_url, static_files):
    """Starts the Procfile's processes on PostgreSQL and Redis; stops them all afterwards."""
    database = settings.DATABASES["default"]
    assert "postgresql" in database["ENGINE"], "process tests need PostgreSQL (make test sets DATABASE_URL)"
    env = {
        "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}",
        "REDIS_URL": redis_url,
        "CHANNEL_LAYER_PREFIX": f"livelog-test-{uuid.uuid4().hex[:8]}",
        "DEBUG": "false",
        "SECRET_KEY": "test-only-secret-key-not-for-production-0123456789abcdef",
        "SECURE_SSL_REDIRECT": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "FEEDS_ALLOW_PRIVATE_NETWORKS": "true",
        "CONN_MAX_AGE": "0",
        "METRICS_TOKEN": METRICS_TOKEN,
    }
    procs = []

    class Stack:
        def web(self, port=None):
            port = port or free_port()
            proc = run_procfile("web", env, port=port)
            procs.append(proc)
            url = f"http://127.0.0.1:{port}"
            wait_until(lambda: http_ok(url + "/api/feeds/"), 30, what=f"web on {port}\n{proc.output()}")
            return url, proc

        def worker(self, name="w"):
            proc = run_procfile("worker", {**env, "WORKER_CONCURRENCY": "2"})
            procs.append(proc)
            wait_until(lambda: "ready." in proc.output(), 30, what=f"worker ready\n{proc.output()}")
            return proc

        def beat(self):
            proc = run_procfile("beat", env)
            procs.append(proc)
            wait_until(lambda: "beat: Starting" in proc.output(), 30, what=f"beat\n{proc.output()}")
            return proc

        def pipeline(self, workers: int = 1) -> str:
            """A web process, `workers` workers and the beat: the whole pipeline; the web's URL."""
            url, _ = self.web()
            for _ in range(workers):
                self.worker()
            self.beat()
            return url

        def logs(self) -> str:
            return "\n".join(f"===== {p.name} (pid {p.pid})\n{p.output()[-4000:]}" for p in procs)

    stack = Stack()
    stack.env = env
    yield stack
    for proc in procs:
        proc.stop()


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser(monkeypatch):
    """Debian's headless Chromium driven by Playwright (a Playwright browser download fails here)."""
    # Playwright's sync API keeps an event loop running in this thread; the ORM calls the test
    # makes meanwhile are still plain synchronous calls.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    if not os.path.exists(CHROMIUM):
        pytest.fail("Chromium is missing: apt-get install -y chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def writes(stack, settings):
    """Run database writes from the test so that they reach the stack's open pages at once.

    The test's delivery becomes the stack's Redis, so the change log's hook pushes to the web
    processes; each call runs in a thread of its own, because Playwright's sync API keeps an event
    loop in this one (where the hook's async_to_sync cannot run), and closes its connection.
    """
    settings.CHANNEL_LAYERS = {
        "live": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # As config/settings.py configures a worker: room for a burst in each web's channel.
            "CONFIG": {
                "hosts": [stack.env["REDIS_URL"]],
                "prefix": stack.env["CHANNEL_LAYER_PREFIX"],
                "capacity": 10000,
            },
        }
    }

    def run(function, *args, **kwargs):
        import threading

        from django.db import connections

        outcome = {}

        def target():
            try:
                outcome["value"] = function(*args, **kwargs)
            except BaseException as exc:  # re-raised in the test's thread
                outcome["error"] = exc
            finally:
                connections.close_all()

        thread = threading.Thread(target=target)
        thread.start()
        thread.join(60)
        if "error" in outcome:
            raise outcome["error"]
        return outcome.get("value")

    return run


PAGE_TRAPS = """
window.__trapped = {alerts: [], violations: [], ran: []};
for (const name of ["alert", "confirm", "prompt", "print"]) {
  window[name] = (...args) => { window.__trapped.alerts.push(name + ":" + args.join(" ")); };
}
document.addEventListener("securitypolicyviolation", (e) => {
  window.__trapped.violations.push(e.effectiveDirective + " " + e.blockedURI + " " + (e.sample || ""));
});
"""


@pytest.fixture
def open_page(browser):
    """open_page(url, **context_options) -> a Playwright page that records what should never happen.

    page.trapped() returns alerts (window.alert and friends are hooked before any script runs),
    CSP violations (securitypolicyviolation events), dialogs, page errors, console errors, and
    requests to anything but the page's own origin.
    """
    contexts = []

    def open_(url, setup=None, **options):
        context = browser.new_context(**options)
        contexts.append(context)
        context.add_init_script(PAGE_TRAPS)
        if setup is not None:
            setup(context)  # e.g. routes, before the page loads
        page = context.new_page()
        seen = {"dialogs": [], "errors": [], "console": [], "foreign": []}
        origin = url.split("/", 3)[:3]
        page.on("dialog", lambda dialog: (seen["dialogs"].append(dialog.message), dialog.dismiss()))
        page.on("pageerror", lambda exc: seen["errors"].append(str(exc)))
        page.on("console", lambda msg: msg.type == "error" and seen["console"].append(msg.text))
        page.on(
            "request",
            lambda request: request.url.split("/", 3)[:3] != origin and seen["foreign"].append(request.url),
        )

        def trapped():
            return {**seen, **page.evaluate("window.__trapped")}

        page.trapped = trapped
        page.goto(url)
        return page

    yield open_
    for context in contexts:
        context.close()


@pytest.fixture
def own_redis():
    port = free_port()
    command = f"redis-server --port {port} --bind 127.0.0.1 --save '' --appendonly no"
    state = {"proc": Proc("redis", command, {})}

    def ping():
        import redis

        try:
            return redis.Redis(port=port, socket_timeout=1).ping()
        except redis.RedisError:
            return False

    class OwnRedis:
        url = f"redis://127.0.0.1:{port}/0"

        def kill(self):
            state["proc"].kill(signal.SIGKILL)
            state["proc"].popen.wait(5)

        def start(self):
            state["proc"] = Proc("redis", command, {})
            wait_until(ping, 10, what="redis")

    wait_until(ping, 10, what="redis")
    yield OwnRedis()
    state["proc"].stop()
