"""The web process under the attacks of issue 10, with its bounds and without them, in one run.

    .venv/bin/python bench/web_attack.py [--streams 300] [--nofile 256] [--seconds 13]

Runs the Procfile's web on PostgreSQL (database livelog_bench_web, created and migrated if
missing) and Redis (database 6, or --redis-url) under `ulimit -n NOFILE`, twice: as the Procfile
has it ("bounded"), and without `--http live.server:Protocol --backlog 128` and with
WEB_MAX_CONNECTIONS_PER_CLIENT=0 ("unbounded": uvicorn's own protocol, as before). Each time a
WebSocket reader connects first, then one client address opens STREAMS idle SSE connections, and
for SECONDS the bench times /healthz and /api/entries/ from another address, then counts the
reader's reconnects, the log's bytes and a slowloris connection's fate (headers trickled, never
finished). Prints one markdown table.
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.procs import Proc, free_port, http_ok, procfile, wait_until  # noqa: E402

DB = "livelog_bench_web"
ENV = {
    "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB}",
    "REDIS_URL": "redis://127.0.0.1:6379/6",
    "CHANNEL_LAYER_PREFIX": "livelog-bench-web",
    "DEBUG": "false",
    "SECRET_KEY": "bench-only-secret-key-0123456789abcdef0123456789abcdef",
    "SECURE_SSL_REDIRECT": "false",
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "CONN_MAX_AGE": "0",
}
BOUNDS = " --http live.server:Protocol --backlog 128"


def timed_get(url: str, timeout: float = 3) -> tuple[bool, float]:
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            response.read()
            return response.status == 200, time.perf_counter() - started
    except (OSError, urllib.error.HTTPError):
        return False, time.perf_counter() - started


class Reader(threading.Thread):
    """One WebSocket reader; counts how often its socket closes under it."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.closes, self.stop = url, 0, threading.Event()

    def run(self):
        from websockets.sync.client import connect

        while not self.stop.is_set():
            try:
                with connect(self.url.replace("http", "ws") + "/ws/live/", origin=self.url, proxy=None) as ws:
                    while not self.stop.is_set():
                        try:
                            ws.recv(timeout=0.5)
                        except TimeoutError:
                            continue
            except Exception:  # noqa: S110 - closed under it: counted below
                pass
            if not self.stop.is_set():
                self.closes += 1
                time.sleep(0.5)


def slowloris(port: int, seconds: float) -> str:
    sock = socket.create_connection(("127.0.0.1", port), timeout=seconds + 5)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    started = time.monotonic()
    sock.settimeout(1)
    try:
        while time.monotonic() - started < seconds:
            sock.sendall(b"X-Slow: 1\r\n")
            try:
                if sock.recv(4096) == b"":
                    return f"closed after {time.monotonic() - started:.1f} s"
            except TimeoutError:
                pass
    except OSError:
        return f"closed after {time.monotonic() - started:.1f} s"
    finally:
        sock.close()
    return f"open after {seconds:.0f} s"


def run_case(name: str, command: str, env: dict, args) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = Proc(
        f"web-{name}",
        f"prlimit --nofile={args.nofile}:{args.nofile} {command.replace('$PORT', str(port))}",
        env,
    )
    reader = Reader(url)
    attack: list[socket.socket] = []
    try:
        wait_until(lambda: http_ok(url + "/healthz"), 30, what=f"web\n{proc.output()}")
        reader.start()
        time.sleep(1)
        log_before = len(proc.output().encode())
        for _ in range(args.streams):
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                sock.sendall(
                    b"GET /api/stream/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n"
                )
                attack.append(sock)
            except OSError:
                break
        health, entries, deadline = [], [], time.monotonic() + args.seconds
        while time.monotonic() < deadline:
            health.append(timed_get(url + "/healthz"))
            entries.append(timed_get(url + "/api/entries/"))
            time.sleep(0.2)
        log_bytes = len(proc.output().encode()) - log_before
        loris = slowloris(port, 15)
        return {
            "case": name,
            "healthz ok": f"{sum(ok for ok, _ in health)}/{len(health)}",
            "healthz p50 / max ms": f"{1000 * statistics.median(s for _, s in health):.0f} / "
            f"{1000 * max(s for _, s in health):.0f}",
            "api ok": f"{sum(ok for ok, _ in entries)}/{len(entries)}",
            "api p50 ms": f"{1000 * statistics.median(s for _, s in entries):.0f}",
            "reader dropped": reader.closes,
            "log bytes": log_bytes,
            "slowloris": loris,
        }
    finally:
        reader.stop.set()
        for sock in attack:
            sock.close()
        proc.stop()


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=300)
    parser.add_argument("--nofile", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=13)
    parser.add_argument("--redis-url", default=ENV["REDIS_URL"])
    args = parser.parse_args()
    ENV["REDIS_URL"] = args.redis_url
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", DB], capture_output=True, check=False)
    env = {**os.environ, **ENV}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True
    )
    web = procfile()["web"]
    assert BOUNDS in web, "the Procfile's web command changed: update BOUNDS"
    rows = [
        run_case("bounded", web, ENV, args),
        run_case("unbounded", web.replace(BOUNDS, ""), {**ENV, "WEB_MAX_CONNECTIONS_PER_CLIENT": "0"}, args),
    ]
    print(f"\n{args.streams} idle SSE connections from one address, ulimit -n {args.nofile}, ", end="")
    print(f"{args.seconds:.0f} s\n")
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("| " + " | ".join("---" for _ in keys) + " |")
    for row in rows:
        print("| " + " | ".join(str(row[key]) for key in keys) + " |")


if __name__ == "__main__":
    main()
