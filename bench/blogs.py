"""Live blogs at scale on one web process: 100 blogs of 50 readers each plus one of 5,000.

Measures, in one run (bench/README.md, "Live blogs"):
1. the ceiling: a bare `websockets` broadcast (bench/fanout_bare.py) to 5,000 sockets, single entries;
2. Livelog's web process (the Procfile's uvicorn command, on Redis) holding the 100 x 50 + 5,000
   readers, each on `/ws/live/?blog=<slug>`: single entries of the big blog, p99 to its last reader,
   as a ratio to (1);
3. while the big blog bursts (`--burst` entries in one fetch), single entries of one small blog:
   p99 from commit to the last of its 50 readers.

Uses fanout.py's processes (server, trigger, raw-asyncio clients) and its database and Redis
settings; the blogs are created in the bench database by `manage.py shell`.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fanout  # noqa: E402
from fanout import BENCH, BENCH_ENV, PY, RESULTS, ROOT, Bench, quantile  # noqa: E402

K_SMALL = 500_000
# A database of its own (createdb -h 127.0.0.1 -U postgres livelog_bench_blogs): the blogs it makes
# and the bench feed it resets never meet another bench's.
BENCH_ENV["DATABASE_URL"] = "postgres://postgres@127.0.0.1:5432/livelog_bench_blogs"
SETUP = """
import json
from blogs.models import Blog, BlogSource
from feeds.models import Feed
Blog.objects.filter(slug__startswith="bench-").delete()
Feed.objects.filter(url__startswith="https://example.com/bench-small-").delete()
big = Blog.objects.create(slug="bench-big", title="Big")
BlogSource.objects.create(blog=big, feed_id={big_feed})
small = []
for i in range({blogs}):
    feed = Feed.objects.create(url=f"https://example.com/bench-small-{{i}}.xml", title=f"small {{i}}")
    blog = Blog.objects.create(slug=f"bench-small-{{i}}", title=f"Small {{i}}")
    BlogSource.objects.create(blog=blog, feed=feed)
    small.append(feed.pk)
print(json.dumps({{"small_feeds": small}}))
"""


def connect(client, port: int, n: int, path: str, concurrency: int) -> dict:
    return client.call(
        timeout=600, op="connect", host="127.0.0.1", port=port, n=n, path=path, concurrency=concurrency
    )


def p(values, q):
    return quantile(values, q) if values else float("nan")


def main():
    args = fanout.parse_args(["--client-procs", "2"])
    extra = {"--blogs": 100, "--per-blog": 50, "--big-readers": 5000, "--entries": 30, "--burst": 100}
    argv = sys.argv[1:]
    for flag in extra:
        if flag in argv:
            extra[flag] = int(argv[argv.index(flag) + 1])
    blogs, per_blog, big_n, entries, burst = extra.values()
    args.entries, args.burst = entries, burst
    fanout.raise_nofile()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    bench = Bench(args, stamp)
    out = {"blogs": blogs, "per_blog": per_blog, "big": big_n, "entries": entries, "burst": burst}
    try:
        bench.prepare()  # migrate, the big blog's feed, two client processes for the big blog
        big_clients = list(bench.clients)
        setup = subprocess.run(
            [PY, "manage.py", "shell", "-c", SETUP.format(big_feed=bench.feed_id, blogs=blogs)],
            cwd=ROOT,
            env={**os.environ, **BENCH_ENV},
            capture_output=True,
            text=True,
            check=True,
        )
        small_feeds = json.loads(setup.stdout.strip().splitlines()[-1])["small_feeds"]
        small0 = bench.start("client-small0", [PY, str(BENCH / "fanout_client.py")], pipes=True)
        others = bench.start("client-others", [PY, str(BENCH / "fanout_client.py")], pipes=True)

        # 1. The ceiling: a bare broadcast to the big blog's number of sockets.
        with bench.serving("bare", f"bare broadcast to {big_n}") as (server, trigger, port):
            bench.connect(port, big_n)
            out["bare"] = bench.singles(trigger, fanout.K_SINGLE, entries, bench.open_count(), server)
        print(f"  bare p99 {p(out['bare']['last_ms'], 0.99):.1f} ms", flush=True)

        # 2. and 3. Livelog with every blog's readers.
        with bench.serving("uvicorn", "Livelog, 100 blogs x 50 + 1 x 5,000") as (server, trigger, port):
            rss0 = fanout.rss_kb(server.pid)
            bench.clients = big_clients
            for client, share in zip(big_clients, (big_n // 2, big_n - big_n // 2), strict=True):
                connect(client, port, share, "/ws/live/?blog=bench-big", args.concurrency)
            connect(small0, port, per_blog, "/ws/live/?blog=bench-small-0", args.concurrency)
            for i in range(1, blogs):
                connect(others, port, per_blog, f"/ws/live/?blog=bench-small-{i}", args.concurrency)
            time.sleep(args.settle)
            held = bench.open_count() + small0.call(op="open")["open"] + others.call(op="open")["open"]
            out["held"] = held
            out["kb_per_conn"] = (fanout.rss_kb(server.pid) - rss0) / max(1, held)
            out["big_blog"] = bench.singles(trigger, fanout.K_SINGLE, entries, bench.open_count(), server)
            print(f"  big blog p99 {p(out['big_blog']['last_ms'], 0.99):.1f} ms", flush=True)

            small_trigger = bench.start(
                "small-trigger",
                [PY, str(BENCH / "fanout_trigger.py"), "--run", f"{stamp}-small", "--mode", "hook"]
                + ["--feed", str(small_feeds[0])],
                {"CHANNEL_LAYER_PREFIX": f"{bench.prefix}-c{bench.case_no}."},
                pipes=True,
            )
            small_trigger.recv(60)
            bench.clients = [small0]
            bench.singles(small_trigger, K_SMALL - 100, 3, per_blog)  # warm-up of this trigger
            trigger.send(op="burst", lo=fanout.K_BURST, n=burst)  # the big blog bursts meanwhile
            time.sleep(0.2)
            out["small_during_burst"] = bench.singles(small_trigger, K_SMALL, 20, per_blog, server)
            out["burst_reply"] = trigger.recv(300)
            bench.clients = big_clients
            bench.all_clients(
                timeout=300, op="wait", lo=fanout.K_BURST, hi=fanout.K_BURST + burst - 1, idle=10, hard=240
            )
            stats, closes = bench.stats(fanout.K_BURST, fanout.K_BURST + burst - 1)
            out["burst_delivered"] = sum(s[0] for s in stats.values())
            out["burst_closes"] = closes
            bench.stop(small_trigger)
            for client in (small0, others):
                client.call(timeout=120, op="close")
    finally:
        bench.stop_all()
    bare99 = p(out["bare"]["last_ms"], 0.99)
    big99 = p(out["big_blog"]["last_ms"], 0.99)
    small = out["small_during_burst"]["commit_last_ms"]
    big_lost = out["big_blog"]["expected"] - out["big_blog"]["delivered"]
    small_lost = out["small_during_burst"]["expected"] - out["small_during_burst"]["delivered"]
    lines = [
        f"Live blogs on one web process ({blogs} blogs x {per_blog} readers + 1 x {big_n}; {entries} single "
        f"entries; a burst of {burst} in the big blog), {time.strftime('%Y-%m-%d %H:%M')}",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| sockets held by the web process | {out['held']:,} ({out['kb_per_conn']:.1f} KB each) |",
        f"| bare broadcast to {big_n}: p50 / p99 to the last reader | {p(out['bare']['last_ms'], 0.5):.1f} / "
        f"{bare99:.1f} ms |",
        f"| big blog ({big_n}): p50 / p99 to the last reader | {p(out['big_blog']['last_ms'], 0.5):.1f} / "
        f"{big99:.1f} ms |",
        f"| big blog p99 × bare p99 (target ≤ 1.3) | **{big99 / bare99:.2f}×** |",
        f"| small blog ({per_blog}) during the burst: p50 / p99 from commit to its last reader "
        f"(target p99 < 50 ms) | {p(small, 0.5):.1f} / **{p(small, 0.99):.1f} ms** ({len(small)} entries) |",
        f"| burst: delivered / expected, closes | {out['burst_delivered']:,} / {burst * big_n:,}, "
        f"{out['burst_closes']} |",
        f"| lost / duplicated (big blog singles; small blog) | {big_lost} / {out['big_blog']['duplicated']}; "
        f"{small_lost} / {out['small_during_burst']['duplicated']} |",
    ]
    text = "\n".join(lines) + "\n"
    output = RESULTS / f"blogs-{stamp}.md"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    output.with_suffix(".json").write_text(json.dumps(out, indent=1, default=str))
    print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
