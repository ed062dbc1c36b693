"""Ingest at scale (issue 3): can 1,000 feeds due every 5 seconds be fetched on time, and at what cost?

    make bench-ingest                       # 1,000 feeds, 5 s interval, 60 s measured
    .venv/bin/python bench/ingest_scale.py --feeds 1000 --interval 5 --duration 60

The real processes, as deployed: the Procfile's `worker`, `beat` and `web` on PostgreSQL (database
livelog_bench_ingest, created if missing and emptied at start) and Redis (database 9, flushed at start and
end). The feeds are served by bench/ingest_server.py, a separate process on 127.0.0.1 (an OS-chosen
port): small RSS documents with validators, so most fetches are answered 304; a few feeds gain an item
every second (--changes-per-second), so some fetches store an entry.

After a warm-up (every feed fetched once in full, then answered 304 at least once), it measures for
--duration seconds:
- fetches per second, as counted by the feed server;
- lag behind schedule: for every fetch, its arrival at the feed server minus the beat tick that made it
  due (beat's "Sending due task" log line); per tick, how many feeds it fetched and when its last fetch
  arrived; per feed, the longest gap between two fetches (a feed skipped by a tick shows a 2x gap);
- CPU per fetch: user+system time of the worker (all its processes), beat, web, the PostgreSQL backends
  of the bench database and the feed server, over the window, divided by the fetches; and how busy the
  whole machine was (it is shared with other work: see the load average printed at start).
"""

import argparse
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT  # the tree whose Procfile processes run; --app-dir points it at another (e.g. an exported commit)
PY = sys.executable
VENV_BIN = Path(PY).parent
DB_NAME = "livelog_bench_ingest"
ENV = {
    "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB_NAME}",
    "REDIS_URL": "redis://127.0.0.1:6379/9",
    "CHANNEL_LAYER_PREFIX": "livelog-bench-ingest",
    "DEBUG": "false",
    "SECRET_KEY": "bench-only-secret-key-0123456789abcdef0123456789abcdef",
    "SECURE_SSL_REDIRECT": "false",
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "FEEDS_ALLOW_PRIVATE_NETWORKS": "true",
    "LOG_LEVEL": "INFO",
}
BEAT_TICK = re.compile(
    r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): INFO/\w+\] Scheduler: Sending due task dispatch"
)
BATCH_DONE = re.compile(r"^\[(\d{4}-\d\d-\d\d [\d:,]+): INFO/.*fetch_feeds?\[[^]]+\] succeeded in ([\d.]+)s")


def log_time(stamp: str) -> float:
    # Celery writes local time with milliseconds.
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


class Proc:
    """A Procfile process in its own session (stopped with its whole group), logging to a file."""

    def __init__(self, name: str, command: str, env: dict):
        self.name = name
        self.log = Path(tempfile.mkstemp(prefix=f"bench-ingest-{name}-", suffix=".log")[1])
        full_env = {**os.environ, **env, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "PYTHONUNBUFFERED": "1"}
        with open(self.log, "wb") as out:
            self.popen = subprocess.Popen(
                ["bash", "-c", f"exec {command}"],
                cwd=APP,
                env=full_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{self.name} did not start:\n{self.output()[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()


def procfile() -> dict[str, str]:
    lines = (APP / "Procfile").read_text().splitlines()
    return {name.strip(): command.strip() for name, command in (line.split(":", 1) for line in lines if line)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare_database() -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone():
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    subprocess.run(
        [PY, "manage.py", "migrate", "--noinput", "--verbosity", "0"],
        cwd=ROOT,
        env={**os.environ, **ENV},
        check=True,
    )


def setup_django():
    os.environ.update(ENV)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


class FeedServer:
    def __init__(self, feeds: int, items: int, changes: float):
        self.popen = subprocess.Popen(
            [PY, str(ROOT / "bench" / "ingest_server.py"), "--feeds", str(feeds), "--items", str(items),
             "--changes-per-second", str(changes)],
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        self.port = int(self.popen.stdout.readline())
        self.requests: list[tuple[float, int, int]] = []

    def url(self, n: int) -> str:
        return f"http://127.0.0.1:{self.port}/feed/{n}.xml"

    def collect(self) -> list:
        import json
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/_stats", timeout=10) as response:  # noqa: S310
            fresh = json.loads(response.read())
        self.requests.extend(tuple(r) for r in fresh)
        return fresh

    def stop(self) -> None:
        self.popen.terminate()
        self.popen.wait(10)


def cpu_of(processes: list[psutil.Process]) -> dict[int, float]:
    times = {}
    for process in processes:
        try:
            t = process.cpu_times()
            times[process.pid] = t.user + t.system
        except psutil.Error:
            pass
    return times


class BackendSampler(threading.Thread):
    """CPU of the PostgreSQL backends of the bench database, sampled often: Celery closes its connection
    around every task (unless CELERY_DB_REUSE_MAX is set), so most backends live for a fraction of a second.
    A backend that lives less than one sample is missed: this is a lower bound."""

    def __init__(self):
        super().__init__(daemon=True)
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.measuring = threading.Event()
        self.stopped = threading.Event()

    def run(self):
        while not self.stopped.wait(0.1):
            for process in psutil.process_iter(["name", "cmdline", "cpu_times"]):
                times = process.info["cpu_times"]
                if process.info["name"] != "postgres" or times is None:
                    continue
                if DB_NAME not in " ".join(process.info["cmdline"] or []):
                    continue
                self.last[process.pid] = times.user + times.system
                # A backend first seen once measuring started is counted from its birth.
                self.first.setdefault(process.pid, 0.0 if self.measuring.is_set() else self.last[process.pid])

    def start_measuring(self) -> None:
        self.first = dict(self.last)
        self.measuring.set()

    def total(self) -> float:
        self.stopped.set()
        self.join()
        return sum(self.last[pid] - self.first.get(pid, 0.0) for pid in self.last)


def cluster_cpu() -> float:
    """CPU of the whole PostgreSQL cluster so far, ended backends included (shared with other work)."""
    processes = [
        p for p in psutil.process_iter(["name", "ppid", "cpu_times"]) if p.info["name"] == "postgres"
    ]
    pids = {p.pid for p in processes}
    total = 0.0
    for process in processes:
        times = process.info["cpu_times"]
        if times is None:
            continue
        total += times.user + times.system
        if process.info["ppid"] not in pids:  # the postmaster: backends that ended are in its children_*
            total += times.children_user + times.children_system
    return total


def groups(procs: dict[str, Proc], server: FeedServer) -> dict[str, list[psutil.Process]]:
    def tree(pid: int) -> list[psutil.Process]:
        try:
            root = psutil.Process(pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    found: dict[str, list[psutil.Process]] = {name: tree(proc.popen.pid) for name, proc in procs.items()}
    found["feed server"] = tree(server.popen.pid)
    found["redis (shared)"] = [
        p for p in psutil.process_iter(["name"]) if (p.info["name"] or "").startswith("redis-server")
    ]
    return found


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def run(args) -> int:
    started = time.time()
    print(f"# Livelog ingest benchmark, {datetime.now().isoformat(timespec='seconds')}")
    python = os.path.relpath(PY, ROOT) if PY.startswith(str(ROOT)) else PY
    print(f"Command: `{' '.join([python, *sys.argv])}`")
    if APP != ROOT:
        print(f"Processes run from {APP}")
    load = os.getloadavg()
    print(
        f"Machine: {psutil.cpu_count()} cores, {platform.platform()}; shared with other work "
        f"(load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f})"
    )
    prepare_database()
    setup_django()
    import redis
    from django.db import connection
    from django.utils import timezone

    from feeds.models import Entry, Feed

    redis.Redis.from_url(ENV["REDIS_URL"]).flushdb()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE feeds_entry, feeds_feed RESTART IDENTITY CASCADE")
    server = FeedServer(args.feeds, args.items, args.changes_per_second)
    now = timezone.now()
    Feed.objects.bulk_create(
        Feed(url=server.url(n), interval=args.interval, next_fetch_at=now) for n in range(args.feeds)
    )
    connection.close()

    commands = procfile()
    env = {**ENV, "WORKER_CONCURRENCY": str(args.concurrency)}
    for name, value in args.setting:
        env[name] = value
    procs: dict[str, Proc] = {}
    try:
        procs["web"] = Proc("web", commands["web"].replace("$PORT", str(free_port())), env)
        procs["worker"] = Proc("worker", commands["worker"], env)
        procs["worker"].wait_for("ready.")
        procs["beat"] = Proc("beat", commands["beat"], env)
        procs["beat"].wait_for("beat: Starting")
        print(
            f"Processes: web, worker (concurrency {args.concurrency}), beat; feed server port {server.port}"
        )

        sampler = BackendSampler()
        sampler.start()

        # Warm-up: every feed fetched in full once (entries stored), then answered 304 at least once.
        deadline = time.monotonic() + args.max_warmup
        while time.monotonic() < deadline:
            time.sleep(1)
            server.collect()
            not_modified = {n for _, n, status in server.requests if status == 304}
            if (
                len(not_modified) == args.feeds
                and time.monotonic() > deadline - args.max_warmup + args.warmup
            ):
                break
        else:
            print(
                f"warning: warm-up incomplete after {args.max_warmup} s ({len(not_modified)} feeds had a 304)"
            )
        warmup = time.time() - started

        server.collect()
        server.requests.clear()
        sampler.start_measuring()
        before = {name: cpu_of(ps) for name, ps in groups(procs, server).items()}
        machine_before, cluster_before = psutil.cpu_times(), cluster_cpu()
        t0 = time.time()
        time.sleep(args.duration)
        t1 = time.time()
        machine_after, cluster_after = psutil.cpu_times(), cluster_cpu()
        after = {name: cpu_of(ps) for name, ps in groups(procs, server).items()}
        after["postgres (bench db)"] = {0: sampler.total()}
        after["postgres (whole cluster, shared)"] = {0: cluster_after - cluster_before}
        server.collect()
        entries = Entry.objects.count()
        connection.close()
    finally:
        for proc in reversed(procs.values()):
            proc.stop()
        server.stop()
        redis.Redis.from_url(ENV["REDIS_URL"]).flushdb()

    # --- Analysis
    requests = [r for r in server.requests if t0 <= r[0] < t1]
    ticks = sorted(
        log_time(m[1]) for line in procs["beat"].output().splitlines() if (m := BEAT_TICK.match(line))
    )
    batch_seconds = [
        float(m[2])
        for line in procs["worker"].output().splitlines()
        if (m := BATCH_DONE.match(line)) and t0 <= log_time(m[1]) < t1
    ]
    window = t1 - t0
    fetches = len(requests)
    full = sum(1 for _, _, status in requests if status == 200)

    lags, per_tick = [], defaultdict(list)
    for when, feed, _status in requests:
        tick = max((t for t in ticks if t <= when), default=None)
        if tick is not None:
            lags.append(when - tick)
            per_tick[tick].append((when - tick, feed))
    complete_ticks = [
        t for t in ticks if t0 <= t and any(u > t for u in ticks) and min(u for u in ticks if u > t) <= t1
    ]
    tick_rows = []
    behind = missed = 0
    for tick in complete_ticks:
        rows = per_tick.get(tick, [])
        distinct = len({feed for _, feed in rows})
        last = max((lag for lag, _ in rows), default=float("nan"))
        late = distinct < args.feeds or not last < args.interval
        behind += late
        missed += args.feeds - distinct
        tick_rows.append((tick, len(rows), distinct, last, late))

    by_feed = defaultdict(list)
    for when, feed, _status in requests:
        by_feed[feed].append(when)
    gaps = [b - a for times in by_feed.values() for a, b in zip(times, times[1:], strict=False)]

    cpu = {
        name: sum(t - before.get(name, {}).get(pid, 0) for pid, t in after[name].items()) for name in after
    }
    app = sum(cpu[n] for n in ("worker", "beat", "web", "postgres (bench db)"))
    busy_before = sum(machine_before) - machine_before.idle - getattr(machine_before, "iowait", 0)
    busy_after = sum(machine_after) - machine_after.idle - getattr(machine_after, "iowait", 0)
    machine_busy = (busy_after - busy_before) / window

    def ms(value: float) -> str:
        return f"{value * 1000:.0f}"

    rows = [
        ("fetches per second", f"**{fetches / window:.1f}** (target {args.feeds / args.interval:.0f})"),
        ("answered 200 (entries stored) / 304", f"{full} / {fetches - full}"),
        (
            "ticks measured / behind (a feed missed, or last fetch ≥ interval after the tick)",
            f"{len(tick_rows)} / {behind}",
        ),
        (
            "lag behind the tick, p50 / p95 / p99 / max",
            " / ".join(f"{v:.2f}" for v in (*(percentile(lags, q) for q in (0.5, 0.95, 0.99)), max(lags)))
            + " s",
        ),
        ("gap between two fetches of a feed, p50 / max", f"{percentile(gaps, 0.5):.2f} / {max(gaps):.2f} s"),
        ("feeds a tick missed (fetched on the next one instead)", str(missed)),
        (
            f"fetch_feeds task duration, p50 / max ({len(batch_seconds)} tasks)",
            f"{ms(percentile(batch_seconds, 0.5))} / {ms(max(batch_seconds, default=0))} ms",
        ),
    ]
    for name in (
        "worker", "beat", "web", "postgres (bench db)", "feed server", "redis (shared)",
        "postgres (whole cluster, shared)",
    ):  # fmt: skip
        per_fetch = cpu[name] / max(fetches, 1) * 1e6
        rows.append((f"CPU {name}", f"{cpu[name] / window * 100:.1f}% of a core, {per_fetch:.0f} µs/fetch"))
    rows += [
        (
            "**CPU per fetch, app (worker+beat+web+its PostgreSQL backends)**",
            f"**{app / max(fetches, 1) * 1e6:.0f} µs**",
        ),
        (
            "whole machine busy (every process, others' too)",
            f"{machine_busy * 100:.0f}% of {psutil.cpu_count()} cores",
        ),
        ("entries stored at the end", str(entries)),
    ]
    print()
    print(f"Feeds {args.feeds}, interval {args.interval} s; {window:.0f} s measured, {warmup:.0f} s warm-up")
    print()
    print("| metric | value |")
    print("| --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value} |")
    print()
    print("Ticks (time after the first measured tick; fetches; distinct feeds; last fetch after the tick):")
    for tick, count, distinct, last, late in tick_rows:
        flag = "  BEHIND" if late else ""
        print(f"  +{tick - tick_rows[0][0]:6.1f} s  {count:5d}  {distinct:5d}  {last:5.2f} s{flag}")
    print()
    print(f"Logs: {', '.join(str(p.log) for p in procs.values())}")
    ok = tick_rows and behind == 0 and fetches / window >= 0.95 * args.feeds / args.interval
    print("RESULT:", "sustained" if ok else "NOT sustained")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--interval", type=int, default=5)
    parser.add_argument("--items", type=int, default=5, help="items per feed document")
    parser.add_argument(
        "--changes-per-second", type=float, default=4.0, help="feeds that gain an item per second"
    )
    parser.add_argument("--duration", type=float, default=60, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=20, help="least seconds of warm-up")
    parser.add_argument("--max-warmup", type=float, default=120)
    parser.add_argument("--concurrency", type=int, default=4, help="worker processes (WORKER_CONCURRENCY)")
    parser.add_argument(
        "--setting", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
        help="extra environment for the processes, e.g. --setting FEEDS_BATCH_SIZE 50",
    )  # fmt: skip
    parser.add_argument(
        "--app-dir", type=Path, help="run the processes of this tree (e.g. `git archive` of HEAD)"
    )
    args = parser.parse_args()
    if args.app_dir:
        global APP
        APP = args.app_dir.resolve()
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
