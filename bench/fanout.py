"""Fan-out benchmark (issues 2 and 4): how fast one web process relays an entry to N live readers.

Servers, each measured in the same run, one at a time:
  bare     the ceiling: websockets 17 broadcasting each Redis pub/sub message (bench/fanout_bare.py)
  uvicorn  Livelog's web process as deployed: the Procfile's `web` command, channels-redis on Redis;
           readers offer no compression (plain shared frames)
  uvicorn-deflate  the same, readers offering what browsers offer ("permessage-deflate;
           client_max_window_bits"): compressed shared frames
  daphne   the same app under `daphne -b 127.0.0.1 -p PORT config.asgi:application`

For each reader count N and server: a fresh server on a free port; a warm-up; the hook's cost with
0 readers; N idle sockets (memory per connection from VmRSS); single entries paced at least --gap
apart and never overlapping (each waits until the previous one reached every reader), giving the
latency to the LAST reader; then a burst of --burst entries in one store() (deliveries/s, lost,
duplicated per reader per entry). Entries are stored by bench/fanout_trigger.py, a separate process
running feeds.store.store() as a worker does; readers are held by bench/fanout_client.py processes.
Only public contracts are used: the Procfile, /ws/live/ with an Origin header, the JSON messages,
store() and the change log's entry_changed hook.

Results: a markdown report printed and written to bench/results/fanout-<timestamp>.md.
"""

import argparse
import contextlib
import json
import os
import platform
import resource
import select
import shlex
import signal
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
APP = ROOT  # the app under test; --app-dir points it at another tree (e.g. an exported commit)
RESULTS = BENCH / "results"
PY = sys.executable
VENV_BIN = Path(PY).parent
NOFILE = 65536
SERVERS = ("bare", "uvicorn", "uvicorn-deflate", "daphne")
# What browsers offer (Chromium, Firefox): readers of the uvicorn-deflate case offer it too.
BROWSER_OFFER = "permessage-deflate; client_max_window_bits"
CLK_TCK = os.sysconf("SC_CLK_TCK")

BENCH_ENV = {
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/livelog_bench",
    "REDIS_URL": "redis://127.0.0.1:6379/12",
    "DEBUG": "false",
    "SECRET_KEY": "bench-secret-key-0123456789abcdef0123456789abcdef",
    "SECURE_SSL_REDIRECT": "false",
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "LOG_LEVEL": "WARNING",
    # Every reader connects from 127.0.0.1, and the 10,000-reader case holds them all at once.
    "WEB_MAX_CONNECTIONS_PER_CLIENT": "0",
    "WEB_MAX_CONNECTIONS": "20000",
}

# Keys of the bench entries: warm-up, hook cost with no readers, single entries, burst, 10k test.
K_WARM, K_IDLE, K_SINGLE, K_BURST, K_BIG = 10, 100, 1000, 100_000, 200_000


class Stopped(Exception):
    pass


def on_sigterm(signum, frame):
    raise Stopped(f"signal {signum}")


def raise_nofile() -> int:
    """Raise RLIMIT_NOFILE as far as allowed (a container may cap root's hard limit); children inherit it."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def nofile() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Child:
    """A process in its own session, with `ulimit -n` raised, stopped by its pid (process group)."""

    def __init__(self, name: str, argv: list[str] | str, env: dict, logs: Path, pipes: bool = False):
        self.name = name
        self.log_path = logs / f"{name}.log"
        self.log = self.log_path.open("w")
        command = argv if isinstance(argv, str) else shlex.join(argv)
        full_env = {**os.environ, **env, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "PYTHONUNBUFFERED": "1"}
        full_env["FANOUT_APP_DIR"] = str(APP)
        self.popen = subprocess.Popen(
            ["bash", "-c", f"ulimit -n {nofile()}; exec {command}"],
            cwd=APP,
            env=full_env,
            stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipes else self.log,
            stderr=self.log,
            start_new_session=True,
        )
        self.pid = self.popen.pid
        self.buf = b""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def send(self, **cmd):
        self.popen.stdin.write((json.dumps(cmd) + "\n").encode())
        self.popen.stdin.flush()

    def recv(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        fd = self.popen.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name}: no reply in {timeout} s (log: {self.log_path})")
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise RuntimeError(f"{self.name} exited (log: {self.log_path}):\n{self.tail()}")
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def call(self, timeout: float = 60, **cmd) -> dict:
        self.send(**cmd)
        return self.recv(timeout)

    def tail(self, lines: int = 20) -> str:
        self.log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 10):
        if self.alive():
            try:
                os.killpg(self.pid, signal.SIGTERM)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait()
            except ProcessLookupError:
                pass
        self.log.close()


def tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo += [int(child) for child in (task / "children").read_text().split()]
    return pids


def rss_kb(pid: int) -> int:
    """VmRSS of the process tree, in KiB."""
    total = 0
    for each in tree(pid):
        try:
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process tree, from /proc/PID/stat."""
    total = 0
    for each in tree(pid):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError):
            pass
    return total / CLK_TCK


def redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def quantile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: list[float]) -> float:
    return quantile(values, 0.5)


class Bench:
    def __init__(self, args, stamp: str):
        self.args = args
        self.stamp = stamp
        self.logs = RESULTS / f"fanout-{stamp}-logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.prefix = f"livelog-bench-fanout-{stamp}-{os.getpid()}"
        self.redis = redis.Redis.from_url(args.redis_url)
        self.children: list[Child] = []
        self.clients: list[Child] = []
        self.feed_id = 0
        self.case_no = 0
        self.offer = None  # what the readers of the current case offer

    # --- processes

    def start(self, name, argv, env=None, pipes=False) -> Child:
        child = Child(
            name, argv, {**BENCH_ENV, "REDIS_URL": self.args.redis_url, **(env or {})}, self.logs, pipes
        )
        self.children.append(child)
        return child

    def stop(self, child: Child):
        child.stop()
        if child in self.children:
            self.children.remove(child)

    def stop_all(self):
        for child in reversed(list(self.children)):
            if child in self.clients and child.alive():
                try:
                    child.call(timeout=15, op="close")
                except Exception as exc:  # stopping anyway
                    print(f"  ({child.name}: {exc})", file=sys.stderr)
            self.stop(child)

    def prepare(self):
        migrate = subprocess.run(
            [PY, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=APP,
            env={**os.environ, **BENCH_ENV},
            capture_output=True,
            text=True,
        )
        if migrate.returncode:
            sys.exit(
                f"migrate failed (create the database: createdb -h 127.0.0.1 -U postgres livelog_bench)\n"
                f"{migrate.stderr[-2000:]}"
            )
        reset = self.start("reset-feed", [PY, str(BENCH / "fanout_trigger.py"), "--reset-feed"], pipes=True)
        self.feed_id = reset.recv(60)["feed"]
        self.stop(reset)
        for i in range(self.args.client_procs):
            self.clients.append(self.start(f"client{i}", [PY, str(BENCH / "fanout_client.py")], pipes=True))

    def start_server(self, kind: str, port: int, case: str) -> Child:
        env = {"PORT": str(port), "CHANNEL_LAYER_PREFIX": f"{self.prefix}-{case}"}
        if kind == "bare":
            argv = [PY, str(BENCH / "fanout_bare.py"), "--port", str(port)]
            argv += ["--redis", self.args.redis_url, "--channel", f"{self.prefix}-{case}:bare"]
            server = self.start(f"{case}-bare", argv, env)
        elif kind in ("uvicorn", "uvicorn-deflate"):
            server = self.start(f"{case}-{kind}", procfile()["web"], env)
        else:
            server = self.start(
                f"{case}-daphne", f"daphne -b 127.0.0.1 -p {port} config.asgi:application", env
            )
        deadline = time.monotonic() + 60
        while True:
            if not server.alive():
                raise RuntimeError(f"{server.name} exited:\n{server.tail()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return server
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{server.name} did not listen on {port}:\n{server.tail()}") from None
                time.sleep(0.1)

    def start_trigger(self, kind: str, case: str) -> Child:
        argv = [PY, str(BENCH / "fanout_trigger.py"), "--run", f"{self.stamp}-{case}"]
        if kind == "bare":
            argv += [
                "--mode",
                "publish",
                "--redis",
                self.args.redis_url,
                "--channel",
                f"{self.prefix}-{case}:bare",
            ]
        else:
            argv += ["--mode", "hook", "--feed", str(self.feed_id)]
        trigger = self.start(
            f"{case}-trigger", argv, {"CHANNEL_LAYER_PREFIX": f"{self.prefix}-{case}"}, pipes=True
        )
        trigger.recv(60)
        return trigger

    def forget_redis_keys(self, case: str):
        keys = list(self.redis.scan_iter(match=f"{self.prefix}-{case}*", count=1000))
        for i in range(0, len(keys), 500):
            self.redis.delete(*keys[i : i + 500])

    # --- readers

    def connect(self, port: int, n: int) -> dict:
        shares = [n // len(self.clients) + (i < n % len(self.clients)) for i in range(len(self.clients))]
        for client, share in zip(self.clients, shares, strict=True):
            client.send(
                op="connect",
                host="127.0.0.1",
                port=port,
                n=share,
                concurrency=self.args.concurrency,
                offer=self.offer,
            )
        replies = [client.recv(600) for client in self.clients]
        errors: dict[str, int] = {}
        for reply in replies:
            for reason, count in reply["errors"].items():
                errors[reason] = errors.get(reason, 0) + count
        return {
            "open": sum(r["open"] for r in replies),
            "failed": sum(r["failed"] for r in replies),
            "errors": errors,
            "seconds": max(r["seconds"] for r in replies),
        }

    def open_count(self) -> int:
        return sum(client.call(op="open")["open"] for client in self.clients)

    def all_clients(self, timeout: float = 60, **cmd) -> list[dict]:
        for client in self.clients:
            client.send(**cmd)
        return [client.recv(timeout) for client in self.clients]

    def stats(self, lo: int, hi: int) -> tuple[dict[int, list], dict[str, int]]:
        """k -> [readers that got it, duplicates, first arrival, last arrival] over all clients, and
        the close codes servers sent since the last reset (and, under "bytes", the bytes received)."""
        merged: dict[int, list] = {}
        closes: dict[str, int] = {"bytes": 0}
        for reply in self.all_clients(op="report", lo=lo, hi=hi):
            closes["bytes"] += reply.get("bytes", 0)
            for code, count in reply["closes"].items():
                closes[code] = closes.get(code, 0) + count
            for key, (got, dup, first, last) in reply["stats"].items():
                k = int(key)
                if k not in merged:
                    merged[k] = [got, dup, first, last]
                else:
                    m = merged[k]
                    m[0], m[1], m[2], m[3] = m[0] + got, m[1] + dup, min(m[2], first), max(m[3], last)
        return merged, closes

    def singles(
        self,
        trigger: Child,
        lo: int,
        count: int,
        readers: int,
        server: Child | None = None,
    ) -> dict:
        """Entries one at a time, each sent once the previous one reached every reader (or after
        `--single-idle` s with no delivery); late deliveries are collected at the end."""
        hard = max(20.0, readers / 250)
        idle = self.args.single_idle
        self.all_clients(op="reset")
        cpu0, redis0 = (cpu_seconds(server.pid) if server else 0.0), redis_cpu(self.redis)
        clients0 = sum(cpu_seconds(client.pid) for client in self.clients)
        sent, committed, incomplete = {}, {}, 0
        store_ms, db_ms, push_ms, hook_ms = [], [], [], []
        phase_started = time.monotonic()
        for k in range(lo, lo + count):
            began = time.monotonic()
            for client in self.clients:
                client.send(op="wait", lo=k, hi=k, idle=idle, hard=hard)
            reply = trigger.call(timeout=60, op="one", k=k)
            sent[k], committed[k] = reply["t"], reply["t_commit"]
            store_ms.append(1000 * reply["dt"])
            db_ms.append(1000 * reply.get("db", reply["dt"]))
            push_ms.append(1000 * reply.get("push", 0.0))
            hook_ms.append(1000 * (reply.get("serialize", 0.0) + reply.get("push", 0.0)))
            done = [client.recv(hard + 30) for client in self.clients]
            if not all(d["complete"] for d in done):
                incomplete += 1
            if time.monotonic() - phase_started > self.args.phase_budget:
                print(f"    phase budget of {self.args.phase_budget:.0f} s spent after {len(sent)} entries")
                break
            time.sleep(max(0.0, began + self.args.gap - time.monotonic()))
        if incomplete:
            # Late deliveries still count (and set the latency); what never comes is lost.
            self.all_clients(timeout=120, op="wait", lo=lo, hi=max(sent), idle=idle, hard=60.0)
        cpu = (cpu_seconds(server.pid) if server else 0.0) - cpu0
        redis_s = redis_cpu(self.redis) - redis0
        clients_s = sum(cpu_seconds(client.pid) for client in self.clients) - clients0
        stats, closes = self.stats(lo, lo + count - 1)
        wire = closes.pop("bytes")
        last = [stats[k][3] - t for k, t in sent.items() if k in stats]
        last_commit = [stats[k][3] - t for k, t in committed.items() if k in stats]
        first = [stats[k][2] - t for k, t in sent.items() if k in stats]
        delivered = sum(stats[k][0] for k in sent if k in stats)
        return {
            "entries": len(sent),
            "incomplete": incomplete,
            "closes": closes,
            "expected": readers * len(sent),
            "delivered": delivered,
            "duplicated": sum(stats[k][1] for k in sent if k in stats),
            "last_ms": [1000 * x for x in last],
            "commit_last_ms": [1000 * x for x in last_commit],
            "first_ms": [1000 * x for x in first],
            "store_ms": store_ms,
            "db_ms": db_ms,
            "push_ms": push_ms,
            "hook_ms": hook_ms,
            "cpu_us": 1e6 * cpu / delivered if delivered else float("nan"),
            "redis_us": 1e6 * redis_s / delivered if delivered else float("nan"),
            "client_us": 1e6 * clients_s / delivered if delivered else float("nan"),
            "wire_bytes": wire / delivered if delivered else float("nan"),
        }

    def burst(self, trigger: Child, server: Child, readers: int) -> dict:
        n, lo = self.args.burst, K_BURST
        self.all_clients(op="reset")
        for client in self.clients:
            client.send(
                op="wait", lo=lo, hi=lo + n - 1, idle=self.args.burst_idle, hard=self.args.burst_timeout
            )
        cpu0, redis0 = cpu_seconds(server.pid), redis_cpu(self.redis)
        reply = trigger.call(timeout=self.args.burst_timeout, op="burst", lo=lo, n=n)
        done = [client.recv(self.args.burst_timeout + 30) for client in self.clients]
        cpu, redis_s = cpu_seconds(server.pid) - cpu0, redis_cpu(self.redis) - redis0
        stats, closes = self.stats(lo, lo + n - 1)
        closes.pop("bytes")
        delivered = sum(s[0] for s in stats.values())
        arrived = max((s[3] for s in stats.values()), default=reply["t"])
        last = arrived - reply["t"]
        after_commit = arrived - reply.get("t_commit", reply["t"])
        return {
            "entries": n,
            "complete": all(d["complete"] for d in done),
            "closes": closes,
            "expected": readers * n,
            "delivered": delivered,
            "lost": readers * n - delivered,
            "duplicated": sum(s[1] for s in stats.values()),
            "store_s": reply["dt"],
            "push_s": reply.get("push", 0.0),
            "last_s": last,
            "per_s": delivered / last if last > 0 else float("nan"),
            "per_s_commit": delivered / after_commit if after_commit > 0 else float("nan"),
            "cpu_us": 1e6 * cpu / delivered if delivered else float("nan"),
            "redis_us": 1e6 * redis_s / delivered if delivered else float("nan"),
        }

    # --- one server, one reader count

    @contextlib.contextmanager
    def serving(self, kind: str, title: str):
        """A fresh server and trigger, warmed up; both stopped and their Redis keys deleted after."""
        self.case_no += 1
        case = f"c{self.case_no}."
        port = free_port()
        print(f"[{time.strftime('%H:%M:%S')}] {title} (port {port})", flush=True)
        server = trigger = None
        self.offer = BROWSER_OFFER if kind == "uvicorn-deflate" else None
        try:
            server = self.start_server(kind, port, case)
            trigger = self.start_trigger(kind, case)
            # Warm-up: imports, first connections and first sends are not what we measure.
            self.connect(port, 4)
            self.singles(trigger, K_WARM, 3, 4)
            self.all_clients(timeout=30, op="close")
            time.sleep(1.0)
            yield server, trigger, port
        finally:
            try:
                self.all_clients(timeout=120, op="close")
            finally:
                for child in (trigger, server):
                    if child is not None:
                        self.stop(child)
                self.forget_redis_keys(case)

    def case(self, kind: str, readers: int, rep: int, burst: bool) -> dict:
        result = {"server": kind, "readers": readers, "rep": rep}
        try:
            with self.serving(kind, f"run {rep}: {kind} with {readers} readers") as (server, trigger, port):
                idle = self.singles(trigger, K_IDLE, self.args.idle_entries, 0)
                result["store0_ms"], result["db0_ms"] = idle["store_ms"], idle["db_ms"]
                result["push0_ms"], result["hook0_ms"] = idle["push_ms"], idle["hook_ms"]
                time.sleep(0.5)
                rss0 = rss_kb(server.pid)
                result["connect"] = self.connect(port, readers)
                time.sleep(self.args.settle)
                rss_n = rss_kb(server.pid)
                result["open"] = self.open_count()
                result["rss0_mb"] = rss0 / 1024
                result["kb_per_conn"] = (rss_n - rss0) / max(1, result["open"])
                result["single"] = self.singles(trigger, K_SINGLE, self.args.entries, result["open"], server)
                if burst:
                    result["burst"] = self.burst(trigger, server, self.open_count())
                result["open_after"] = self.open_count()
        except (TimeoutError, RuntimeError, OSError, ValueError) as exc:
            result["error"] = str(exc).splitlines()[0]
            print(f"    error: {exc}", file=sys.stderr)
        print("    " + summary_line(result), flush=True)
        return result

    def big(self, kind: str, readers: int) -> dict:
        """Hold `readers` sockets on one process, then send a few entries through them."""
        result = {"server": kind, "readers": readers}
        try:
            with self.serving(kind, f"{kind} holding {readers} readers") as (server, trigger, port):
                rss0 = rss_kb(server.pid)
                result["connect"] = self.connect(port, readers)
                result["open"] = self.open_count()
                time.sleep(self.args.hold)
                result["held"] = self.open_count()
                result["kb_per_conn"] = (rss_kb(server.pid) - rss0) / max(1, result["held"])
                result["single"] = self.singles(trigger, K_BIG, self.args.big_entries, result["held"], server)
                result["open_after"] = self.open_count()
                result["alive"] = server.alive()
        except (TimeoutError, RuntimeError, OSError, ValueError) as exc:
            result["error"] = str(exc).splitlines()[0]
            print(f"    error: {exc}", file=sys.stderr)
        return result


def procfile() -> dict[str, str]:
    commands = {}
    for line in (APP / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            commands[name.strip()] = command.strip()
    return commands


def summary_line(r: dict) -> str:
    if "single" not in r:
        return f"{r['server']} {r['readers']}: {r.get('error', 'no result')}"
    s = r["single"]
    text = (
        f"open {r['open']}/{r['readers']}, last reader p50 {median(s['last_ms']):.1f} ms "
        f"p99 {quantile(s['last_ms'], 0.99):.1f} ms, store() {median(r['store0_ms']):.2f} -> "
        f"{median(s['store_ms']):.2f} ms, hook {median(r['hook0_ms']):.3f} -> {median(s['hook_ms']):.3f} ms, "
        f"{r['kb_per_conn']:.1f} KB/conn"
    )
    if "burst" in r:
        b = r["burst"]
        text += f"; burst {b['delivered']}/{b['expected']} dup {b['duplicated']} {b['per_s']:.0f}/s"
        text += f" in {b['last_s']:.1f} s, complete {b['complete']}, closes {b['closes']}"
    text += f"; singles {s['delivered']}/{s['expected']}, closes {s['closes']}"
    return text


# --- report


def fmt(value: float, digits: int = 1) -> str:
    if value is None or value != value:  # NaN
        return "–"
    return f"{value:,.{digits}f}"


def ratio(a: float, b: float) -> float:
    return a / b if b and a == a and b == b else float("nan")


def machine_info(label: str = "") -> list[str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem = next(
        line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if "MemTotal" in line
    )
    versions = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in (
            "django",
            "channels",
            "channels-redis",
            "redis",
            "uvicorn",
            "websockets",
            "daphne",
            "twisted",
        )
    )
    try:
        redis_version = redis.Redis.from_url(BENCH_ENV["REDIS_URL"]).info("server")["redis_version"]
    except redis.RedisError:
        redis_version = "?"
    pg = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-tAc", "show server_version"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=APP, capture_output=True, text=True)
    if head.returncode or not (APP / ".git").exists():
        code = f"the tree at `{APP}`" + (f" ({label})" if label else "")
    else:
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "live", "config", "feeds", "Procfile", "requirements"],
            cwd=APP,
            capture_output=True,
            text=True,
        ).stdout.splitlines()
        code = f"git {head.stdout.strip()}" + (
            f" with uncommitted changes in {len(dirty)} app file(s)" if dirty else " (app files as committed)"
        )
        code += f" ({label})" if label else ""
    return [
        f"- Machine: {cpu}, {os.cpu_count()} cores, {int(mem) // 1024} MiB RAM, {platform.platform()}; "
        f"shared with other engineers (load average at start {os.getloadavg()[0]:.2f})",
        f"- Python {platform.python_version()}; {versions}; Redis {redis_version}; PostgreSQL {pg or '?'}",
        f"- Code under test: {code}",
        f"- `web` in the Procfile: `{procfile()['web']}`",
    ]


def report(args, results: list[dict], big: dict | None, command: str, seconds: float) -> str:
    reps = sorted({r["rep"] for r in results})
    multi = len(reps) > 1
    by = {(r["rep"], r["readers"], r["server"]): r for r in results}
    lines = [f"# Livelog fan-out benchmark, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}", ""]
    lines += [f"Command: `{command}` ({seconds / 60:.1f} min)", ""]
    lines += machine_info(args.label)
    lines += [
        f"- Method: {args.client_procs} client processes (raw asyncio; offering nothing, or for "
        f"uvicorn-deflate `{BROWSER_OFFER}`; {args.concurrency} "
        f"handshakes in flight each; RLIMIT_NOFILE {nofile()}); per reader count "
        f"and server, a fresh server; {args.entries} single entries, each sent ≥ {args.gap * 1000:.0f} ms "
        "after the previous one and only once the previous one reached every reader; latency = "
        "arrival at the LAST reader − time.time() taken just before store() (or PUBLISH for bare); "
        f"a burst of {args.burst} entries stored by one store() call, to ≤ {args.burst_max_readers} readers. "
        "Trigger: a separate Django process calling feeds.store.store() (entry_changed → on_commit → push).",
        "",
        "## Single entries: latency to the last reader",
        "",
    ]
    head = "| readers | server | connected | entries | not delivered | p50 ms | p99 ms | p99 × bare "
    head += "| p50 ms from COMMIT | p99 ms from COMMIT | p99 from COMMIT × bare "
    head += "| first reader p50 ms (from store()) |"
    lines += table_head(head, multi)
    for r in results:
        bare = by.get((r["rep"], r["readers"], "bare"))
        row = f"| {r['readers']:,} | {r['server']} "
        if "single" not in r:
            row += f"| failed: {r.get('error', '?')} |" + " |" * 9
        else:
            s = r["single"]
            bare_s = bare["single"] if bare and "single" in bare else None
            connected = f"{r['open']:,}" + (
                f" ({r['connect']['failed']} failed)" if r["connect"]["failed"] else ""
            )
            missing = s["expected"] - s["delivered"]
            # With deliveries missing, the slowest reader was never heard: latencies are lower bounds.
            bound = "≥ " if missing else ""
            row += f"| {connected} | {s['entries']} | {missing:,} "
            for key in ("last_ms", "commit_last_ms"):
                p99 = quantile(s[key], 0.99)
                bare_p99 = quantile(bare_s[key], 0.99) if bare_s else float("nan")
                row += f"| {bound}{fmt(median(s[key]))} | {bound}{fmt(p99)} "
                row += f"| {bound}{fmt(ratio(p99, bare_p99), 2)} "
            row += f"| {fmt(median(s['first_ms']))} |"
        lines.append((f"| {r['rep']} " if multi else "") + row)
    lines += [
        "",
        "Per entry, the slowest reader; p50/p99 over the entries of the row. *ms* counts from just before "
        "store() (bare: before PUBLISH), so it includes the database write; *from COMMIT* counts from the "
        "commit, when the hook sends (bare: the same as *ms*). Not delivered = reader×entry pairs that never "
        "arrived (latencies are then lower bounds, marked ≥).",
        "",
    ]
    failures = [r for r in results if r.get("connect", {}).get("errors")]
    for r in failures:
        errors = ", ".join(f"{reason} ×{count}" for reason, count in r["connect"]["errors"].items())
        lines.append(
            f"- Connect failures, {r['readers']:,} readers on {r['server']} (run {r['rep']}): {errors}"
        )
    lines += [""] if failures else []
    lines += ["## Costs: server CPU, memory per idle connection, the hook", ""]
    head = "| readers | server | server CPU µs/delivery | client CPU µs/delivery | bytes/delivery "
    head += "| KB/idle conn "
    head += "| store() ms, 0 → N readers | of which DB, 0 → N | the hook (serialize + push), 0 → N |"
    lines += table_head(head, multi)
    for r in results:
        if "single" not in r:
            continue
        s = r["single"]
        row = (
            f"| {r['readers']:,} | {r['server']} | {fmt(s['cpu_us'])} | {fmt(s['client_us'])} "
            f"| {fmt(s.get('wire_bytes', float('nan')), 0)} | {fmt(r['kb_per_conn'])} "
        )
        if r["server"] == "bare":
            row += f"| PUBLISH {fmt(median(r['store0_ms']), 2)} → {fmt(median(s['store_ms']), 2)} | – | – |"
        else:
            row += (
                f"| {fmt(median(r['store0_ms']), 2)} → {fmt(median(s['store_ms']), 2)} "
                f"| {fmt(median(r['db0_ms']), 2)} → {fmt(median(s['db_ms']), 2)} "
                f"| {fmt(median(r.get('hook0_ms') or r['push0_ms']), 3)} → "
                f"{fmt(median(s.get('hook_ms') or s['push_ms']), 3)} |"
            )
        lines.append((f"| {r['rep']} " if multi else "") + row)
    lines += [
        "",
        "CPU = utime+stime (/proc/PID/stat) of the server's process tree, and of the client processes, over "
        "the single-entry phase ÷ deliveries. Bytes = what the readers' sockets received (WebSocket "
        "frames, pings included) over the phase ÷ deliveries. Memory = (VmRSS of the server tree with N "
        "idle sockets − VmRSS after the warm-up with none) ÷ N. store() = time inside store() for one "
        f"entry in the trigger process, median of {args.idle_entries} entries with no reader and of the "
        "single entries with N; DB = until COMMIT returned. The hook = the entry_changed receiver's own "
        "time (it serializes the event) plus its on-commit push.",
        "",
    ]
    bursts = [r for r in results if "burst" in r]
    if bursts:
        lines += [f"## Burst: {args.burst} entries in one store()", ""]
        head = (
            "| readers | server | expected | delivered | lost | duplicated | deliveries/s "
            "| deliveries/s from COMMIT | last arrival s "
        )
        head += "| store() s | of which push s | server CPU µs/delivery | Redis CPU µs/delivery |"
        if multi:
            head = "| run " + head
        lines += [head, "|" + " --- |" * (head.count("|") - 1)]
        for r in bursts:
            b = r["burst"]
            row = (
                f"| {r['readers']:,} | {r['server']} | {b['expected']:,} | {b['delivered']:,} "
                f"| {b['lost']:,} | {b['duplicated']:,} | {fmt(b['per_s'], 0)} "
                f"| {fmt(b.get('per_s_commit', float('nan')), 0)} | {fmt(b['last_s'], 2)} "
                f"| {fmt(b['store_s'], 2)} | {fmt(b['push_s'], 2)} "
                f"| {fmt(b['cpu_us'])} | {fmt(b['redis_us'])} |"
            )
            lines.append((f"| {r['rep']} " if multi else "") + row)
        lines += [
            "",
            "Lost = reader×entry pairs never received (each reader counts each entry id once; a second copy "
            "is a duplicate). deliveries/s = delivered ÷ (last arrival − send); from COMMIT, ÷ (last "
            "arrival − the burst's commit), which leaves storing the 500 rows out. Redis CPU is the whole "
            "shared Redis server's (other engineers' tests use it too): indicative only.",
            "",
        ]
    lines += daphne_vs_uvicorn(results, reps)
    lines += compressed_vs_plain(results, reps)
    lines += targets(args, results, reps)
    if big:
        lines += big_report(big)
    return "\n".join(lines) + "\n"


def table_head(head: str, multi: bool) -> list[str]:
    if multi:
        head = "| run " + head
    return [head, "|" + " --- |" * (head.count("|") - 1)]


def per_rep(results, reps, readers, server, value):
    out = []
    for rep in reps:
        for r in results:
            if (r["rep"], r["readers"], r["server"]) == (rep, readers, server) and "single" in r:
                v = value(r)
                if v is not None:
                    out.append(v)
    return out


def daphne_vs_uvicorn(results, reps) -> list[str]:
    counts = sorted({r["readers"] for r in results})
    servers = {r["server"] for r in results}
    if not {"daphne", "uvicorn"} <= servers:
        return []
    lines = [
        "## daphne ÷ uvicorn (same run; > 1 means daphne is slower or heavier)",
        "",
        "| readers | p50 latency from COMMIT | p99 latency from COMMIT | server CPU per delivery (singles) "
        "| server CPU per delivery (burst) | KB per idle conn | burst deliveries/s (uvicorn ÷ daphne) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    metrics = [
        lambda r: median(r["single"]["commit_last_ms"]),
        lambda r: quantile(r["single"]["commit_last_ms"], 0.99),
        lambda r: r["single"]["cpu_us"],
        lambda r: r.get("burst", {}).get("cpu_us"),
        lambda r: r["kb_per_conn"],
    ]
    for n in counts:
        cells = []
        for metric in metrics:
            d = per_rep(results, reps, n, "daphne", metric)
            u = per_rep(results, reps, n, "uvicorn", metric)
            cells.append(
                fmt(median([ratio(a, b) for a, b in zip(d, u, strict=False)]), 2) if d and u else "–"
            )
        d = per_rep(results, reps, n, "daphne", lambda r: r.get("burst", {}).get("per_s"))
        u = per_rep(results, reps, n, "uvicorn", lambda r: r.get("burst", {}).get("per_s"))
        cells.append(fmt(median([ratio(b, a) for a, b in zip(d, u, strict=False)]), 2) if d and u else "–")
        lines.append(f"| {n:,} | " + " | ".join(cells) + " |")
    lines += ["", f"Medians over {len(reps)} run(s) of the per-run ratio.", ""]
    return lines


def compressed_vs_plain(results, reps) -> list[str]:
    """Issue 15's targets: compressed shared frames against plain ones and the bare ceiling."""
    servers = {r["server"] for r in results}
    if not {"uvicorn", "uvicorn-deflate"} <= servers:
        return []
    lines = [
        "## Compressed shared frames (issue 15): uvicorn-deflate against uvicorn and bare, same run",
        "",
        "| readers | bytes per delivery, deflate ÷ plain (≤ 0.55) | server CPU per delivery, deflate ÷ plain "
        "(≤ 1.2) | p99 from COMMIT, deflate ÷ bare (≤ 1.3) | p99 from COMMIT, plain ÷ bare |",
        "| --- | --- | --- | --- | --- |",
    ]

    def per_run(n, server, other, metric):
        values = []
        for rep in reps:
            a = per_rep(results, [rep], n, server, metric)
            b = per_rep(results, [rep], n, other, metric)
            if a and b:
                values.append(ratio(a[0], b[0]))
        return values

    def cell(values, limit):
        if not values:
            return "–"
        m = median(values)
        runs = " · ".join(fmt(v, 2) for v in values)
        return f"{fmt(m, 2)} ({runs}) {'✅' if m <= limit else '❌'}" if limit else f"{fmt(m, 2)} ({runs})"

    def p99(r):
        return quantile(r["single"]["commit_last_ms"], 0.99)

    def wire(r):
        return r["single"].get("wire_bytes")

    def cpu(r):
        return r["single"]["cpu_us"]

    for n in sorted({r["readers"] for r in results}):
        cells = [
            cell(per_run(n, "uvicorn-deflate", "uvicorn", wire), 0.55),
            cell(per_run(n, "uvicorn-deflate", "uvicorn", cpu), 1.2),
            cell(per_run(n, "uvicorn-deflate", "bare", p99), 1.3),
            cell(per_run(n, "uvicorn", "bare", p99), None),
        ]
        lines.append(f"| {n:,} | " + " | ".join(cells) + " |")
    lines += ["", "Medians of the per-run ratios (each run's in brackets); ✅/❌ read off them.", ""]
    return lines


def targets(args, results, reps) -> list[str]:
    lines = [
        "## Against the targets of issue 4",
        "",
        "| target | " + " | ".join(_app_servers(results)) + " |",
    ]
    lines.append("| --- |" + " --- |" * len(_app_servers(results)))

    def p99(key):
        return lambda r: quantile(r["single"][key], 0.99)

    def p99_ratio(n, server, key):
        values = []
        for rep in reps:
            mine = per_rep(results, [rep], n, server, p99(key))
            bare = per_rep(results, [rep], n, "bare", p99(key))
            if mine and bare:
                values.append(ratio(mine[0], bare[0]))
        return median(values) if values else float("nan")

    for n in (1000, 5000):
        if any(r["readers"] == n for r in results):
            cells = []
            for server in _app_servers(results):
                x = p99_ratio(n, server, "commit_last_ms")
                ms = median(per_rep(results, reps, n, server, p99("commit_last_ms")))
                end = p99_ratio(n, server, "last_ms")
                end_ms = median(per_rep(results, reps, n, server, p99("last_ms")))
                cells.append(
                    f"{fmt(x, 1)}× ({fmt(ms, 0)} ms) {'✅' if x <= 2 else '❌'}; "
                    f"from store(): {fmt(end, 1)}× ({fmt(end_ms, 0)} ms)"
                )
            lines.append(
                f"| p99 single entry ≤ 2× bare at {n:,} readers (from COMMIT) | " + " | ".join(cells) + " |"
            )
    cells = []
    for server in _app_servers(results):
        burst = [
            r["burst"] for r in results if r["server"] == server and r["readers"] == 1000 and "burst" in r
        ]
        if burst:
            lost, dup = sum(b["lost"] for b in burst), sum(b["duplicated"] for b in burst)
            ok = "✅" if lost == 0 and dup == 0 and args.burst >= 500 else "❌"
            cells.append(f"{lost:,} lost, {dup:,} duplicated {ok}")
        else:
            cells.append("not run")
    lines.append(
        f"| 0 lost / 0 duplicated, {args.burst}-burst to 1,000 readers | " + " | ".join(cells) + " |"
    )
    cells = []
    for server in _app_servers(results):
        kb = [
            r["kb_per_conn"]
            for r in results
            if r["server"] == server and r["readers"] >= 1000 and "open" in r
        ]
        cells.append(f"{fmt(max(kb), 1)} KB {'✅' if kb and max(kb) <= 30 else '❌'}" if kb else "–")
    lines.append(
        "| ≤ 30 KB server memory per idle connection (worst N ≥ 1,000) | " + " | ".join(cells) + " |"
    )
    cells = []
    for server in _app_servers(results):
        zero = [x for r in results if r["server"] == server and "store0_ms" in r for x in r["store0_ms"]]
        big_n = max((r["readers"] for r in results if r["server"] == server and "single" in r), default=0)
        loaded = [
            x
            for r in results
            if r["server"] == server and r["readers"] == big_n and "single" in r
            for x in r["single"]["store_ms"]
        ]
        hook0 = [x for r in results if r["server"] == server and "hook0_ms" in r for x in r["hook0_ms"]]
        hook_n = [
            x
            for r in results
            if r["server"] == server and r["readers"] == big_n and "single" in r
            for x in r["single"]["hook_ms"]
        ]
        if hook0 and hook_n:
            grow = ratio(median(hook_n), median(hook0))
            ok = "✅" if grow <= 1.5 and median(hook_n) <= 1.5 else "❌"
            cells.append(
                f"hook {fmt(median(hook0), 3)} → {fmt(median(hook_n), 3)} ms at {big_n:,} ({fmt(grow, 1)}×); "
                f"store() {fmt(median(zero), 2)} → {fmt(median(loaded), 2)} ms {ok}"
            )
        else:
            cells.append("–")
    lines.append("| hook cost per entry independent of readers, ~1 ms (0 → N) | " + " | ".join(cells) + " |")
    lines += [
        "",
        "✅/❌ are read off the numbers above (p99 from COMMIT ≤ 2× bare; 0/0; ≤ 30 KB; hook at N ≤ 1.5× "
        "hook at 0, and ≤ 1.5 ms), medians over runs; nothing is asserted.",
        "",
    ]
    return lines


def _app_servers(results) -> list[str]:
    return [s for s in ("uvicorn", "uvicorn-deflate", "daphne") if any(r["server"] == s for r in results)]


def big_report(big: dict) -> list[str]:
    lines = [f"## {big['readers']:,} sockets on one {big['server']} process", ""]
    if "single" not in big:
        return [*lines, f"Failed: {big.get('error', '?')}", ""]
    c, s = big["connect"], big["single"]
    lines += [
        "| asked | connected | held after hold | open at the end | connect s | KB/conn | entries | "
        "delivered | p50 ms | p99 ms | server alive |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| {big['readers']:,} | {big['open']:,} | {big['held']:,} | {big['open_after']:,} "
        f"| {fmt(c['seconds'])} "
        f"| {fmt(big['kb_per_conn'])} | {s['entries']} | {s['delivered']:,}/{s['expected']:,} "
        f"| {fmt(median(s['last_ms']))} | {fmt(quantile(s['last_ms'], 0.99))} | {big.get('alive')} |",
    ]
    if c["errors"]:
        lines += ["", "Connect errors: " + ", ".join(f"{k} ×{v}" for k, v in c["errors"].items())]
    return [*lines, ""]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", default="100,1000,5000", help="reader counts (default 100,1000,5000)")
    parser.add_argument(
        "--servers",
        default="bare,uvicorn,uvicorn-deflate,daphne",
        help="of bare,uvicorn,uvicorn-deflate,daphne",
    )
    parser.add_argument(
        "--quick", action="store_true", help="100 and 1,000 readers, fewer entries, no 10k test"
    )
    parser.add_argument("--entries", type=int, default=30, help="single entries per case (default 30)")
    parser.add_argument("--gap", type=float, default=0.15, help="minimum seconds between single entries")
    parser.add_argument("--phase-budget", type=float, default=60.0, help="max seconds of single entries")
    parser.add_argument(
        "--single-idle", type=float, default=10.0, help="next entry after this long w/o delivery"
    )
    parser.add_argument("--idle-entries", type=int, default=20, help="entries timed with no reader")
    parser.add_argument("--burst", type=int, default=500, help="entries in the burst (default 500)")
    parser.add_argument("--burst-max-readers", type=int, default=1000, help="burst only up to this many")
    parser.add_argument("--burst-timeout", type=float, default=240.0, help="seconds to wait for a burst")
    parser.add_argument(
        "--burst-idle", type=float, default=15.0, help="give up after this long with no delivery"
    )
    parser.add_argument("--big", type=int, default=10_000, help="sockets for the one-process test (0: skip)")
    parser.add_argument("--big-server", choices=SERVERS, help="default: the app server with the best p99")
    parser.add_argument("--big-entries", type=int, default=3)
    parser.add_argument("--hold", type=float, default=10.0, help="seconds to hold the big test's sockets")
    parser.add_argument("--repeat", type=int, default=1, help="run the whole matrix this many times")
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=50, help="handshakes in flight per client process")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds idle before reading VmRSS")
    parser.add_argument("--redis-url", default=BENCH_ENV["REDIS_URL"])
    parser.add_argument(
        "--app-dir", type=Path, default=ROOT, help="the Livelog tree to run (default: this one)"
    )
    parser.add_argument("--label", default="", help="what the app tree is, for the report")
    parser.add_argument("--output", type=Path, help="default: bench/results/fanout-<timestamp>.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.clients = "100,1000" if args.clients == "100,1000,5000" else args.clients
        args.entries = min(args.entries, 20)
        args.idle_entries = min(args.idle_entries, 10)
        args.big = 0
    args.counts = [int(n) for n in args.clients.split(",")]
    args.server_list = [s for s in args.servers.split(",") if s]
    unknown = set(args.server_list) - set(SERVERS)
    if unknown:
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    return args


def main(argv=None):
    global APP
    args = parse_args(argv)
    APP = args.app_dir.resolve()
    command = " ".join([".venv/bin/python", "bench/fanout.py", *(argv if argv is not None else sys.argv[1:])])
    raise_nofile()
    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    stamp = time.strftime("%Y%m%d-%H%M%S")
    started = time.monotonic()
    bench = Bench(args, stamp)
    results, big = [], None
    try:
        bench.prepare()
        for rep in range(1, args.repeat + 1):
            for readers in args.counts:
                for server in args.server_list:
                    burst = readers <= args.burst_max_readers and args.burst > 0
                    results.append(bench.case(server, readers, rep, burst))
        if args.big:
            kind = args.big_server or best_app_server(results)
            if kind:
                big = bench.big(kind, args.big)
    except (KeyboardInterrupt, Stopped) as exc:
        print(f"\ninterrupted ({str(exc) or 'Ctrl-C'}); stopping every process started", file=sys.stderr)
    finally:
        bench.stop_all()
    if not results:
        return 1
    text = report(args, results, big, command, time.monotonic() - started)
    output = args.output or RESULTS / f"fanout-{stamp}.md"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    output.with_suffix(".json").write_text(
        json.dumps({"command": command, "results": results, "big": big}, indent=1)
    )
    print("\n" + text)
    shown = output.relative_to(ROOT) if output.is_relative_to(ROOT) else output
    print(f"Written to {shown}; logs in {bench.logs.relative_to(ROOT)}")
    return 0


def best_app_server(results) -> str | None:
    apps = [r for r in results if r["server"] != "bare" and "single" in r]
    if not apps:
        return None
    top = max(r["readers"] for r in apps)
    return min(
        (r for r in apps if r["readers"] == top), key=lambda r: quantile(r["single"]["last_ms"], 0.99)
    )["server"]


if __name__ == "__main__":
    sys.exit(main())
