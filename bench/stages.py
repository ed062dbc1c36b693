"""Where the time goes, per new entry: published → fetched → committed → delivered → on a reader's screen.

    .venv/bin/python bench/stages.py [--entries 30]

Runs the Procfile's web, worker and beat on PostgreSQL (database livelog_bench_stages) and Redis
(database 7), serves one feed on 127.0.0.1 that gains an entry every second (its pubDate is the moment
it appears), follows it with one WebSocket reader, then prints the stage latencies from /metrics and
a sample of the /metrics text. The feed is fetched every 5 s, so "published → fetched" is dominated by
the polling interval (about 2.5 s on average): that is the price of polling, not of Livelog.
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.procs import free_port, http_ok, run_procfile, wait_until  # noqa: E402

DB = "livelog_bench_stages"
ENV = {
    "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB}",
    "REDIS_URL": "redis://127.0.0.1:6379/7",
    "CHANNEL_LAYER_PREFIX": "livelog-bench-stages",
    "DEBUG": "false",
    "SECRET_KEY": "bench-only-secret-key-0123456789abcdef0123456789abcdef",
    "SECURE_SSL_REDIRECT": "false",
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "FEEDS_ALLOW_PRIVATE_NETWORKS": "true",
    "METRICS_TOKEN": "bench",
    "CONN_MAX_AGE": "0",
}
STAGES = ("published_to_fetched", "fetched_to_committed")


class Feed:
    def __init__(self):
        self.items: list[tuple[int, float]] = []
        feed = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                items = "".join(
                    f"<item><guid>e{n}</guid><title>entry {n}</title><pubDate>{formatdate(at, usegmt=True)}"
                    f"</pubDate></item>"
                    for n, at in reversed(feed.items[-50:])
                )
                head = '<?xml version="1.0"?><rss version="2.0"><channel><title>Stages</title>'
                data = f"{head}{items}</channel></rss>".encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/feed.xml"


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def scrape(web: str) -> str:
    request = urllib.request.Request(web + "/metrics", headers={"Authorization": "Bearer bench"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return response.read().decode()


def histogram(text: str, name: str, stage: str | None = None) -> tuple[int, float, list[tuple[float, int]]]:
    label = f'stage="{stage}"' if stage else ""
    count = total = 0.0
    buckets = []
    for line in text.splitlines():
        if line.startswith("#") or (label and label not in line):
            continue
        series, value = line.rsplit(" ", 1)
        if series.startswith(f"{name}_count"):
            count = float(value)
        elif series.startswith(f"{name}_sum"):
            total = float(value)
        elif series.startswith(f"{name}_bucket"):
            bound = series.split('le="')[1].split('"')[0]
            buckets.append((float(bound), int(float(value))))
    return int(count), total, buckets


def quantile_bound(buckets, count, q):
    for bound, cumulative in buckets:
        if cumulative >= q * count:
            return bound
    return float("inf")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=30)
    args = parser.parse_args()
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", DB], capture_output=True, check=False)
    env = {**os.environ, **ENV}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True
    )
    subprocess.run([sys.executable, "manage.py", "flush", "--noinput"], cwd=ROOT, env=env, check=True)
    subprocess.run(["redis-cli", "-n", "7", "flushdb"], capture_output=True, check=False)
    os.environ.update(ENV)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from websockets.sync.client import connect

    from feeds.models import Feed as FeedRow

    feed = Feed()
    port = free_port()
    web = f"http://127.0.0.1:{port}"
    procs = [run_procfile("web", ENV, port=port), run_procfile("worker", ENV), run_procfile("beat", ENV)]
    received: dict[int, float] = {}
    try:
        wait_until(lambda: http_ok(web + "/healthz"), 60, what="web")
        FeedRow.objects.create(url=feed.url, interval=5)

        def read():
            with connect(web.replace("http", "ws") + "/ws/live/", origin=web, proxy=None) as ws:
                for text in ws:
                    title = json.loads(text)["entry"]["title"]
                    received.setdefault(int(title.split()[-1]), time.time())

        threading.Thread(target=read, daemon=True).start()
        time.sleep(8)  # the reader is connected and the beat ticks
        for n in range(args.entries):
            feed.items.append((n, time.time()))
            time.sleep(1)
        wait_until(lambda: len(received) >= args.entries, 30, what="every entry on the reader")
        text = scrape(web)
    finally:
        for proc in procs:
            proc.stop()
        feed.httpd.shutdown()
        subprocess.run(["redis-cli", "-n", "7", "flushdb"], capture_output=True, check=False)

    appeared = dict(feed.items)
    end_to_end = [received[n] - appeared[n] for n in appeared]
    rows = []
    for stage in STAGES:
        count, total, buckets = histogram(text, "livelog_entry_stage_seconds", stage)
        rows.append(
            (
                stage.replace("_to_", " → "),
                count,
                total / count,
                quantile_bound(buckets, count, 0.5),
                quantile_bound(buckets, count, 0.99),
            )
        )
    count, total, buckets = histogram(text, "livelog_entry_delivered_seconds")
    rows.append(
        (
            "committed → delivered by the web process",
            count,
            total / count,
            quantile_bound(buckets, count, 0.5),
            quantile_bound(buckets, count, 0.99),
        )
    )
    print(
        f"\n{args.entries} entries, one a second; feed fetched every 5 s; command: "
        f"`.venv/bin/python bench/stages.py --entries {args.entries}`\n"
    )
    print("| stage | entries | mean | p50 ≤ | p99 ≤ |\n| --- | --- | --- | --- | --- |")
    for name, count, mean, p50, p99 in rows:
        print(f"| {name} | {count} | {mean * 1000:.1f} ms | {p50 * 1000:g} ms | {p99 * 1000:g} ms |")
    print(
        f"| appeared in the feed → on the reader's socket | {len(end_to_end)} | "
        f"{sum(end_to_end) / len(end_to_end) * 1000:.0f} ms | {percentile(end_to_end, 0.5) * 1000:.0f} ms | "
        f"{percentile(end_to_end, 0.99) * 1000:.0f} ms |"
    )
    print("\nA sample of /metrics:\n\n```")
    keep = (
        "livelog_fetches_total",
        "livelog_entries_stored_total",
        "livelog_connected_clients ",
        "livelog_fetch_duration_seconds_count",
        "livelog_fetch_duration_seconds_sum",
        "livelog_entry_stage_seconds_count",
        "livelog_entry_delivered_seconds_count",
    )
    print("\n".join(line for line in text.splitlines() if line.startswith(keep)))
    print("```")
    return 0


if __name__ == "__main__":
    sys.exit(main())
