"""Deploying as Heroku does: the buildpack's files, Heroku Redis (TLS, a password, a self-signed
certificate) and the smallest plans' connection limits."""

import datetime
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import psutil
import pytest

from feeds.models import Entry, Feed
from tests.feedserver import GrowingFeed
from tests.procs import ROOT, Proc, free_port, http_ok, procfile, run_procfile, wait_until
from tests.wsclient import ResumingClient

PASSWORD = "test-redis-password"  # noqa: S105 - a throwaway server's
# The name of the test's own Redis and PostgreSQL connections, left out of the counts.
TEST_CLIENT = "livelog-test"


def self_signed_certificate(folder):
    """A certificate for 127.0.0.1 signed by itself, as Heroku Redis presents."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "livelog-test-redis")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "redis.crt", folder / "redis.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


@pytest.fixture
def tls_redis(tmp_path):
    """A redis-server that speaks only TLS, with a password and a self-signed certificate."""
    import redis

    cert_file, key_file = self_signed_certificate(tmp_path)
    port = free_port()
    proc = Proc(
        "redis-tls",
        f"redis-server --port 0 --tls-port {port} --bind 127.0.0.1 --tls-cert-file {cert_file} "
        f"--tls-key-file {key_file} --tls-auth-clients no --requirepass {PASSWORD} "
        f"--save '' --appendonly no --dir {tmp_path}",
        {},
    )
    client = redis.Redis(
        port=port,
        password=PASSWORD,
        ssl=True,
        ssl_cert_reqs="none",
        socket_timeout=2,
        decode_responses=True,
        client_name=TEST_CLIENT,
    )

    def ping():
        try:
            return client.ping()
        except redis.RedisError:
            return False

    wait_until(ping, 10, what=f"TLS redis\n{proc.output()}")
    client.url = f"rediss://:{PASSWORD}@127.0.0.1:{port}"
    yield client
    client.close()
    proc.stop()


# Every Redis client of a process, as production makes them; prints what each one got.
CLIENTS = """
import asyncio, django, json, sys
django.setup()
from django.core.cache import cache
from channels.layers import get_channel_layer
from config import redis
from config.celery import app
from feeds import stats
from live.health import check_redis

def layer_round_trip():
    async def go():
        layer = get_channel_layer("live")
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "t.ping"})
        return (await layer.receive(channel))["type"]
    return asyncio.run(go())

def broker():
    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1)
        return connection.as_uri()

def metrics():
    stats.observe({"probe": 1})  # never raises: read back to see whether it arrived
    return stats.read()["probe"]

checks = {
    "cache": lambda: (cache.set("probe", 1), cache.get("probe"))[1],
    "metrics": metrics,
    "health": lambda: check_redis()[1],
    "channel_layer": layer_round_trip,
    "celery_broker": broker,
}
report = {}
for name, check in checks.items():
    try:
        report[name] = "ok " + str(check())
    except Exception as exc:
        report[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps(report))
"""


def redis_clients(url: str, **env) -> dict[str, str]:
    result = subprocess.run(
        [sys.executable, "-c", CLIENTS],
        cwd=ROOT,
        env={**production_env(), "REDIS_URL": url, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def production_env() -> dict[str, str]:

    return {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SECRET_KEY": "test-only-secret-key-not-for-production-0123456789abcdef",
        "DATABASE_URL": os.environ.get("DATABASE_URL", ""),
    }


def test_every_redis_client_checks_the_certificate_by_default(tls_redis):
    report = redis_clients(tls_redis.url)
    for name, outcome in report.items():
        assert "certificate verify failed" in outcome.lower(), (name, report)


def test_one_setting_turns_certificate_checks_off_for_every_redis_client(tls_redis):
    report = redis_clients(tls_redis.url, REDIS_TLS_VERIFY="false")
    assert all(outcome.startswith("ok") for outcome in report.values()), report
    assert report["channel_layer"] == "ok t.ping"
    assert report["celery_broker"].startswith("ok rediss://")


def test_a_wrong_password_is_refused_not_ignored(tls_redis):
    wrong = tls_redis.url.replace(PASSWORD, "not-the-password")
    report = redis_clients(wrong, REDIS_TLS_VERIFY="false")
    assert not any(outcome.startswith("ok") for outcome in report.values()), report


def test_the_buildpack_finds_one_package_file_with_the_production_pins_only():
    root_files = [
        name
        for name in ("requirements.txt", "Pipfile.lock", "poetry.lock", "uv.lock")
        if (ROOT / name).exists()
    ]
    assert root_files == ["requirements.txt"]
    lines = [
        line.strip()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    # In step with requirements/ by construction: the root file is the production list.
    assert lines == ["-r requirements/base.txt"]
    pins = [
        line.split("#")[0].strip()
        for line in (ROOT / "requirements/base.txt").read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    packages = {pin.split("==")[0].split("[")[0].lower() for pin in pins}
    assert all("==" in pin for pin in pins), pins
    assert not packages & {"pytest", "ruff", "playwright", "honcho", "daphne", "psutil", "cryptography"}
    assert "celery[redis]==5.7.0" in pins  # kombu's Redis transport needs what the extra brings
    # The tested Python, not whatever is newest when the buildpack runs.
    assert (ROOT / ".python-version").read_text().strip() == "{}.{}".format(*sys.version_info[:2])


# --- The slug: what the buildpack builds, and the Procfile's processes run from it

# What the buildpack reads; a change to any of them builds a fresh virtualenv.
BUILD_INPUTS = ("requirements.txt", "requirements/base.txt", ".python-version")
CACHE = Path(tempfile.gettempdir()) / "livelog-slug-venvs"


def fresh_virtualenv() -> Path:
    """A virtualenv made from the root package file alone, kept between runs while its inputs hold."""
    digest = hashlib.sha256(sys.version.encode())
    for name in BUILD_INPUTS:
        digest.update((ROOT / name).read_bytes())
    venv = CACHE / digest.hexdigest()[:16]
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test run may be building the same one
        if not (venv / "complete").exists():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", venv], check=True)
            install = subprocess.run(
                [
                    venv / "bin" / "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "-r",
                    "requirements.txt",
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=900,
            )
            assert install.returncode == 0, install.stdout + install.stderr
            (venv / "complete").touch()
    return venv


@pytest.fixture(scope="session")
def slug(tmp_path_factory):
    """The app as the buildpack leaves it: the checkout's files, a fresh virtualenv and the static
    files, collected with no database or Redis to reach (the build has none)."""
    venv = fresh_virtualenv()
    build = tmp_path_factory.mktemp("build")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (build / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, build / name)
    nowhere = free_port()
    collect = subprocess.run(
        [venv / "bin" / "python", "manage.py", "collectstatic", "--noinput"],
        cwd=build,
        env={
            "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
            "SECRET_KEY": "build-time-secret-key-0123456789abcdefghijklmnopqrstuvwxyz-0123456789",
            "DATABASE_URL": f"postgres://nobody:secret@127.0.0.1:{nowhere}/nothing",
            "REDIS_URL": f"rediss://:secret@127.0.0.1:{nowhere}",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert collect.returncode == 0, collect.stdout + collect.stderr
    assert (build / "staticfiles" / "staticfiles.json").exists()
    return build, venv / "bin"


def test_the_build_collects_static_files_with_nothing_to_connect_to(slug):
    build, _ = slug
    manifest = json.loads((build / "staticfiles" / "staticfiles.json").read_text())
    assert "live/live.js" in manifest["paths"]


def process_owners(procs) -> dict[int, str]:
    """pid -> the Procfile process it belongs to (its own pid or a child's)."""
    owners = {}
    for proc in procs:
        if proc.alive():
            root = psutil.Process(proc.pid)
            for process in [root, *root.children(recursive=True)]:
                owners[process.pid] = proc.name
    return owners


def redis_clients_by_process(redis_client, procs) -> Counter:
    """CLIENT LIST, each connection named after the Procfile process (or test) whose socket it is."""
    owners = process_owners(procs)
    by_port = {c.laddr.port: c.pid for c in psutil.net_connections("tcp") if c.laddr and c.pid}
    counts = Counter()
    for client in redis_client.client_list():
        port = int(client["addr"].rsplit(":", 1)[1])
        counts[owners.get(by_port.get(port), "other")] += 1
    return counts


def database_connections_by_process(procs) -> Counter:
    from django.db import connection

    owners = process_owners(procs)
    by_port = {c.laddr.port: c.pid for c in psutil.net_connections("tcp") if c.laddr and c.pid}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT client_port FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        ports = [port for (port,) in cursor.fetchall()]
    return Counter(owners.get(by_port.get(port), "other") for port in ports)


def memory_by_process(procs) -> dict[str, float]:
    """PSS in MiB of each Procfile process with its children: shared pages counted once."""
    memory = {}
    for proc in procs:
        root = psutil.Process(proc.pid)
        pss = sum(p.memory_full_info().pss for p in [root, *root.children(recursive=True)])
        memory[proc.name] = pss / 2**20
    return memory


@pytest.fixture
def dynos(slug, tls_redis, transactional_db, settings, feed_server):
    """Start the Procfile's processes from the slug, with the environment Heroku gives them."""
    build, bin_dir = slug
    database = settings.DATABASES["default"]
    env = {
        "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}",
        "REDIS_URL": tls_redis.url,
        # What app.json sets, and what a Basic dyno's profile script exports (the Python buildpack).
        **{
            name: var["value"]
            for name, var in json.loads((ROOT / "app.json").read_text())["env"].items()
            if "value" in var
        },
        "SECRET_KEY": "heroku-generated-secret-0123456789abcdefghijklmnopqrstuvwxyz-0123456789",
        "WEB_CONCURRENCY": "2",
        "ALLOWED_HOSTS": "127.0.0.1",
        "FEEDS_ALLOW_PRIVATE_NETWORKS": "true",  # the test's feeds are on 127.0.0.1
        # make test's settings for the test process itself, which a dyno does not have.
        "DEBUG": None,
        "CONN_MAX_AGE": None,
        "SECURE_SSL_REDIRECT": None,
        "LIVELOG_TEST_REDIS_URL": None,
    }
    started = []

    class Dynos:
        procs = started

        def run(self, name, port=None, **extra):
            port = port or (free_port() if name == "web" else None)
            proc = run_procfile(
                name, {**self.env, "PORT": str(port or ""), **extra}, port=port, cwd=build, bin_dir=bin_dir
            )
            proc.port = port
            started.append(proc)
            return proc

        def release(self):
            proc = self.run("release")
            proc.popen.wait(120)
            assert proc.popen.returncode == 0, proc.output()

        def web(self, port=None):
            proc = self.run("web", port=port)
            url = f"http://127.0.0.1:{proc.port}"
            wait_until(lambda: http_ok(url + "/healthz"), 30, what=f"web\n{proc.output()}")
            proc.url = url
            return proc

        def worker(self):
            proc = self.run("worker")
            wait_until(lambda: "ready." in proc.output(), 60, what=f"worker\n{proc.output()}")
            return proc

        def beat(self):
            proc = self.run("beat")
            wait_until(lambda: "beat: Starting" in proc.output(), 30, what=f"beat\n{proc.output()}")
            return proc

        def logs(self):
            return "\n".join(f"===== {p.name} (pid {p.pid})\n{p.output()[-3000:]}" for p in started)

    dynos = Dynos()
    dynos.env = env
    yield dynos
    for proc in started:
        proc.stop(30)


def readyz(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=10) as response:  # noqa: S310
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


class PeakConnections:
    """Samples the connection counts in a thread while the test runs, keeping the highest seen:
    Redis clients other than the test's own, PostgreSQL connections to the test database other than
    the test's own."""

    def __init__(self, redis_url: str, database: dict):
        import psycopg
        import redis

        self.redis = redis.Redis.from_url(redis_url, ssl_cert_reqs="none", client_name=TEST_CLIENT)
        self.database = psycopg.connect(
            host=database["HOST"],
            port=database["PORT"],
            user=database["USER"],
            dbname=database["NAME"],
            application_name=TEST_CLIENT,
            autocommit=True,
        )
        self.redis_peak = self.database_peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.wait(0.2):
            clients = [c for c in self.redis.client_list() if c["name"] != TEST_CLIENT]
            (connections,) = self.database.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name <> %s AND pid <> ALL(%s)",
                [TEST_CLIENT, self.test_backends],
            ).fetchone()
            self.redis_peak = max(self.redis_peak, len(clients))
            self.database_peak = max(self.database_peak, connections)

    def __enter__(self):
        from django.db import connection

        with connection.cursor() as cursor:  # the test's own ORM connection
            cursor.execute("SELECT pg_backend_pid()")
            self.test_backends = [cursor.fetchone()[0]]
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)
        self.redis.close()
        self.database.close()


@pytest.mark.slow
@pytest.mark.timeout(900)  # the first run also builds the virtualenv
def test_the_smallest_heroku_stack_delivers_exactly_once_within_the_plans_connection_limits(
    dynos, tls_redis, feed_server, settings
):
    dynos.release()
    web, worker, beat = dynos.web(), dynos.worker(), dynos.beat()
    feeds = [GrowingFeed(feed_server, f"/wire{n}.xml", f"wire{n}") for n in range(3)]
    for feed in feeds:
        Feed.objects.create(url=feed.url, interval=5)
    database = settings.DATABASES["default"]
    readers = [ResumingClient(web.url, "0")]
    try:
        wait_until(lambda: readyz(web.url)[0] == 200, 40, what=f"ready\n{readyz(web.url)}\n{dynos.logs()}")
        one_reader = redis_clients_by_process(tls_redis, dynos.procs)["web"]
        with PeakConnections(tls_redis.url, database) as peak:
            readers += [ResumingClient(web.url, "0") for _ in range(19)]
            for _ in range(5):
                for feed in feeds:
                    feed.append(2)
                time.sleep(2)
            wait_until(lambda: Entry.objects.count() == 30, 60, what=f"30 stored\n{dynos.logs()}")
            stored = sorted(Entry.objects.values_list("id", flat=True))
            for reader in readers:
                wait_until(lambda r=reader: len(r.created_ids()) >= 30, 30, what=f"all\n{dynos.logs()}")
            assert readyz(web.url)[0] == 200
            time.sleep(6)  # a tick or two more, and the sockets settle
        redis_counts = redis_clients_by_process(tls_redis, dynos.procs)
        database_counts = database_connections_by_process(dynos.procs)
        memory = memory_by_process([web, worker, beat])
        for reader in readers:
            assert sorted(reader.created_ids()) == stored  # every entry, once
            assert reader.reconnects == 0
    finally:
        for reader in readers:
            reader.stop()
    print(
        f"\nRedis clients {dict(redis_counts)}, at most {peak.redis_peak}\n"
        f"PostgreSQL connections {dict(database_counts)}, at most {peak.database_peak}\n"
        "PSS MiB " + ", ".join(f"{name} {mib:.0f}" for name, mib in memory.items())
    )
    assert redis_counts["web"] == one_reader, "readers never add Redis connections"
    assert peak.redis_peak <= 15
    assert peak.database_peak <= 15
    # A Basic dyno has 512 MB; the worker's figure is its parent and its processes together.
    assert all(mib < 512 for mib in memory.values()), memory


class SlowFeed(GrowingFeed):
    """A growing feed whose server can be told to take its time."""

    delay = 0.0

    def respond(self, handler):
        time.sleep(self.delay)
        super().respond(handler)


def sigterm(proc) -> float:
    """What Heroku does to a dyno: SIGTERM to every process in it, SIGKILL 30 s later. Seconds it took."""
    started = time.monotonic()
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.popen.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.popen.wait()
        raise AssertionError(f"{proc.name} outlived Heroku's 30 s\n{proc.output()[-3000:]}") from None
    return time.monotonic() - started


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigterm_to_web_then_worker_during_a_burst_loses_nothing(dynos, feed_server):
    dynos.release()
    web, worker = dynos.web(), dynos.worker()
    dynos.beat()
    feeds = [SlowFeed(feed_server, f"/burst{n}.xml", f"burst{n}") for n in range(3)]
    for feed in feeds:
        Feed.objects.create(url=feed.url, interval=5)
    readers = [ResumingClient(web.url, "0") for _ in range(10)]

    def burst():
        for _ in range(30):
            for feed in feeds:
                feed.append()
            time.sleep(0.5)

    publisher = threading.Thread(target=burst, daemon=True)
    publisher.start()
    try:
        wait_until(lambda: Entry.objects.count() >= 6, 30, what=f"the burst to flow\n{dynos.logs()}")
        web_stopped_in = sigterm(web)
        dynos.web(port=web.port)  # the new dyno, behind the same address
        # The worker is told to stop while a fetch is waiting on a slow server.
        feeds[0].delay = 4.0
        hits = feed_server.hits["/burst0.xml"]
        wait_until(lambda: feed_server.hits["/burst0.xml"] > hits, 20, what="a fetch of the slow feed")
        time.sleep(0.5)
        worker_stopped_in = sigterm(worker)
        feeds[0].delay = 0.0
        dynos.worker()
        publisher.join(30)
        total = sum(len(feed.items) for feed in feeds)
        wait_until(lambda: Entry.objects.count() == total, 60, what=f"{total} stored\n{dynos.logs()}")
        stored = sorted(Entry.objects.values_list("id", flat=True))
        for reader in readers:
            wait_until(lambda r=reader: len(r.created_ids()) >= total, 30, what=f"all\n{dynos.logs()}")
        time.sleep(1)
    finally:
        for reader in readers:
            reader.stop()
    print(f"\nweb stopped in {web_stopped_in:.1f} s, worker in {worker_stopped_in:.1f} s; {total} entries")
    # The fetch under way when the worker was told to stop finished; none of its processes died.
    after_sigterm = worker.output().split("Warm shutdown", 1)[1]
    assert re.search(r"fetch_feeds\[[^]]+\] succeeded", after_sigterm), after_sigterm
    assert "WorkerLostError" not in worker.output()
    for reader in readers:
        assert sorted(reader.created_ids()) == stored  # every entry, once
        # 1012 "service restart": the page reconnects with its cursor.
        assert reader.close_codes[0] == 1012, reader.close_codes


# --- app.json (the Deploy button) and the README's steps agree with the Procfile and the settings


def test_app_json_matches_the_procfile_and_the_settings():
    app = json.loads((ROOT / "app.json").read_text())
    processes = set(procfile()) - {"release"}
    assert set(app["formation"]) == processes == {"web", "worker", "beat"}
    assert app["formation"]["beat"]["quantity"] == 1  # exactly one beat
    assert [pack["url"] for pack in app["buildpacks"]] == ["heroku/python"]
    plans = [addon["plan"] if isinstance(addon, dict) else addon for addon in app["addons"]]
    assert {plan.split(":")[0] for plan in plans} == {"heroku-postgresql", "heroku-redis"}
    assert app["env"]["SECRET_KEY"] == {
        "description": app["env"]["SECRET_KEY"]["description"],
        "generator": "secret",
    }
    assert app["env"]["REDIS_TLS_VERIFY"]["value"] == "false"  # Heroku Redis's certificate is self-signed
    settings_source = (ROOT / "config/settings.py").read_text() + (ROOT / "Procfile").read_text()
    readme = (ROOT / "README.md").read_text()
    for name, var in app["env"].items():
        assert var.get("description"), name
        assert f'"{name}"' in settings_source or f"${{{name}" in settings_source, f"{name} is read nowhere"
        assert f"`{name}`" in readme, f"{name} is not in the README's configuration table"


def test_the_readme_deploys_what_app_json_and_the_procfile_say():
    app = json.loads((ROOT / "app.json").read_text())
    readme = (ROOT / "README.md").read_text()
    assert f"https://www.heroku.com/deploy?template={app['repository']}" in readme
    steps = readme.split("### Deploy from the command line", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    plans = [addon["plan"] for addon in app["addons"]]
    for plan in plans:
        assert f"heroku addons:create {plan}" in steps
    assert "--buildpack heroku/python" in steps
    scale = re.search(r"heroku ps:scale (.+)", steps).group(1).split()
    assert {item.split("=")[0] for item in scale} == set(app["formation"])
    assert "beat=1" in scale
    configured = re.search(r"heroku config:set ((?:.|\\\n)+?)\n(?!\s)", steps).group(1)
    for name, var in app["env"].items():
        if var.get("required", True) and "value" in var or "generator" in var:
            assert f"{name}=" in configured, f"{name} is set by app.json but not by the CLI steps"
