"""A pushed entry, from the hub's POST to the last of 1,000 readers; beside a polled one, in the same run.

    .venv/bin/python bench/push.py [--readers 1000] [--pushes 50] [--polls 10]

Runs the Procfile's web, worker and beat on PostgreSQL (database livelog_bench_push) and Redis
(database 7), the WebSub test hub (tests/websubhub.py) in its own process, and a feed server on
127.0.0.1. Two feeds: one names the hub (subscribed and verified through the real callback before
anything is measured), one does not and is polled every 5 s. Readers are held by bench/fanout_client.py
processes (raw asyncio WebSockets).

- push: the hub POSTs a signed document holding the new entry to the callback, as a hub does after a
  publish; the latency runs from just before the hub sends that POST to the moment the last reader
  has the entry.
- poll: an entry is added to the other feed's document; the latency runs from that moment to the
  last reader (it waits for the next fetch: up to 5 s).
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.fanout import Child  # noqa: E402
from tests.procs import free_port, http_ok, run_procfile, wait_until  # noqa: E402
from tests.websubhub import TestHub  # noqa: E402

DB = "livelog_bench_push"
ENV = {
    "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB}",
    "REDIS_URL": "redis://127.0.0.1:6379/7",
    "CHANNEL_LAYER_PREFIX": "livelog-bench-push",
    "DEBUG": "false",
    "SECRET_KEY": "bench-only-secret-key-0123456789abcdef0123456789abcdef",
    "SECURE_SSL_REDIRECT": "false",
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "FEEDS_ALLOW_PRIVATE_NETWORKS": "true",
    # Every reader comes from 127.0.0.1: lift the per-address cap, as bench/fanout.py does.
    "WEB_MAX_CONNECTIONS_PER_CLIENT": "0",
}
PER_CLIENT = 500


class Feeds:
    """Two RSS documents on 127.0.0.1: /pushed.xml names the hub, /polled.xml does not."""

    def __init__(self, hub_url: str):
        self.items: dict[str, list[tuple[int, str]]] = {"pushed": [], "polled": []}
        self.hub_url = hub_url
        feeds = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.strip("/").removesuffix(".xml")
                if name not in feeds.items:
                    self.send_error(404)
                    return
                data = feeds.document(name)
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, name: str) -> str:
        return f"{self.base}/{name}.xml"

    def document(self, name: str, last: int = 20) -> bytes:
        items = "".join(
            f"<item><guid>{name}-{k}</guid><title>{title}</title></item>"
            for k, title in reversed(self.items[name][-last:])
        )
        links = (
            f'<atom:link rel="hub" href="{self.hub_url}"/><atom:link rel="self" href="{self.url(name)}"/>'
            if name == "pushed"
            else ""
        )
        return (
            '<?xml version="1.0"?><rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom"><channel>'
            f"<title>{name}</title>{links}{items}</channel></rss>"
        ).encode()


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=1000)
    parser.add_argument("--pushes", type=int, default=50)
    parser.add_argument("--polls", type=int, default=10)
    args = parser.parse_args()
    # The bench's own database, made afresh: nothing left from another version's migrations.
    subprocess.run(
        ["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", DB], capture_output=True, check=False
    )
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", DB], capture_output=True, check=True)
    port = free_port()
    web = f"http://127.0.0.1:{port}"
    env = {**ENV, "SITE_URL": web}
    full = {**os.environ, **env}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=full, check=True
    )
    subprocess.run(["redis-cli", "-n", "7", "flushdb"], capture_output=True, check=False)
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from feeds.models import Feed, Subscription

    hub = TestHub()
    feeds = Feeds(hub.url)
    logs = Path(os.environ.get("TMPDIR", "/tmp")) / "livelog-bench-push"
    logs.mkdir(exist_ok=True)
    procs = [run_procfile("web", env, port=port), run_procfile("worker", env), run_procfile("beat", env)]
    clients = []
    try:
        wait_until(lambda: http_ok(web + "/healthz"), 60, what="web")
        pushed = Feed.objects.create(url=feeds.url("pushed"), interval=5)
        Feed.objects.create(url=feeds.url("polled"), interval=5)
        sub = wait_until(
            lambda: Subscription.objects.filter(feed=pushed, state=Subscription.State.ACTIVE).first(),
            60,
            what="a verified subscription",
        )
        print(f"subscribed: {sub.topic} at {sub.hub}, lease {sub.lease_seconds} s", flush=True)

        for n in range((args.readers + PER_CLIENT - 1) // PER_CLIENT):
            client = Child(
                f"client{n}", [sys.executable, str(ROOT / "bench" / "fanout_client.py")], {}, logs, True
            )
            clients.append(client)
            count = min(PER_CLIENT, args.readers - n * PER_CLIENT)
            client.send(op="connect", host="127.0.0.1", port=port, n=count, concurrency=50)
            reply = client.recv(120)
            assert reply["failed"] == 0, reply
        print(f"{args.readers} readers connected", flush=True)
        time.sleep(2)

        def last_arrival(k: int) -> float:
            for client in clients:
                client.send(op="wait", lo=k, hi=k, idle=15.0, hard=30.0)
            for client in clients:
                reply = client.recv(60)
                assert reply["complete"], reply
            last = 0.0
            for client in clients:
                client.send(op="report", lo=k, hi=k)
                stats = client.recv(60)["stats"][str(k)]
                assert stats[1] == 0, f"duplicates of {k}: {stats}"
                last = max(last, stats[3])
            return last

        push_latency, answered = [], []
        for k in range(1, args.pushes + 1):
            feeds.items["pushed"].append((k, f"fanout k={k} t=0"))
            body = feeds.document("pushed", last=3).decode()
            before = len(hub.state()["deliveries"])
            assert hub.control("deliver", topic=feeds.url("pushed"), body=body)["statuses"] == [204]
            delivery = hub.state()["deliveries"][before]
            sent = delivery["sent"]
            answered.append(delivery["done"] - sent)
            push_latency.append(last_arrival(k) - sent)
            time.sleep(0.3)

        poll_latency = []
        for k in range(args.pushes + 1, args.pushes + args.polls + 1):
            time.sleep(1.3)  # entries appear at arbitrary moments of the 5-second schedule
            appeared = time.time()
            feeds.items["polled"].append((k, f"fanout k={k} t=0"))
            poll_latency.append(last_arrival(k) - appeared)
    finally:
        for client in clients:
            client.popen.kill()
        for proc in procs:
            proc.stop()
        hub.stop()
        feeds.httpd.shutdown()
        subprocess.run(["redis-cli", "-n", "7", "flushdb"], capture_output=True, check=False)

    print(f"\ncommand: `.venv/bin/python bench/push.py --readers {args.readers} --pushes {args.pushes} "
          f"--polls {args.polls}`\n")  # fmt: skip
    print(f"| path, to the last of {args.readers:,} readers | entries | mean | p50 | p99 | max |")
    print("| --- | --- | --- | --- | --- | --- |")
    rows = (
        ("push: hub's POST → last reader", push_latency),
        ("push: hub's POST → our answer (verified, parsed, stored, committed)", answered),
        ("poll (every 5 s): entry appears → last reader", poll_latency),
    )
    for name, values in rows:
        print(
            f"| {name} | {len(values)} | {sum(values) / len(values) * 1000:.0f} ms | "
            f"{percentile(values, 0.5) * 1000:.0f} ms | {percentile(values, 0.99) * 1000:.0f} ms | "
            f"{max(values) * 1000:.0f} ms |"
        )
    print(json.dumps({"push_ms": [round(v * 1000, 1) for v in push_latency]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
