"""An editor's post, from the write API's answer to the last of 1,000 readers of the blog.

Runs the Procfile's web process (uvicorn, channels-redis on Redis, PostgreSQL), a live blog with one
feed, N readers of `/ws/live/?blog=<slug>` held by bench/fanout_client.py processes, and:
- posts: `POST /api/blogs/<slug>/posts/` with a Bearer token, one at a time; latency is from the
  moment the 201 answer is read (and, second column, from the moment the request was sent) to the
  arrival at the last reader;
- the baseline, in the same run, on the same readers: feed entries of the blog's source stored by
  bench/fanout_trigger.py as a worker does (store() -> commit -> push), from COMMIT to the last reader.
Posts and entries alternate, so the machine's noise falls on both alike.

    createdb -h 127.0.0.1 -U postgres livelog_bench_editors  # once
    .venv/bin/python bench/editor_post.py                   # 1,000 readers, 60 posts, 60 entries
    .venv/bin/python bench/editor_post.py --readers 200 --posts 20
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fanout import APP, BENCH, BENCH_ENV, PY, Child, procfile, quantile  # noqa: E402

SLUG = "bench-editors"
K_POST, K_ENTRY = 1_000, 500_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def manage(env: dict, *args: str, code: str | None = None) -> str:
    argv = [PY, "manage.py", *args] + (["-c", code] if code else [])
    done = subprocess.run(
        argv, cwd=APP, env={**os.environ, **env}, capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout.strip()


SETUP = """
from django.contrib.auth.models import Group, User
from blogs.models import Blog, add_source
from editors.models import ApiToken
from feeds.models import Feed
Blog.objects.filter(slug="{slug}").delete()
blog = Blog.objects.create(slug="{slug}", title="Editors bench")
add_source(blog, Feed.objects.get(pk={feed}))
user, _ = User.objects.get_or_create(username="bench-editor", defaults={{"first_name": "Bench"}})
user.groups.add(Group.objects.get(name="Editors"))
print(ApiToken.issue(user, "bench")[1])
"""


def post(url: str, token: str, k: int) -> tuple[float, float]:
    sent = time.time()
    body = json.dumps({"title": f"fanout k={k} t={sent:.6f}", "body": "An editor's update. " * 20}).encode()
    request = urllib.request.Request(
        url, body, {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - 127.0.0.1
        response.read()
        if response.status != 201:
            raise RuntimeError(f"POST answered {response.status}")
    return sent, time.time()


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--readers", type=int, default=1000)
    parser.add_argument("--posts", type=int, default=60)
    parser.add_argument("--clients", type=int, default=2, help="reader processes")
    parser.add_argument("--gap", type=float, default=0.15, help="seconds between two sends, at least")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/livelog_bench_editors")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/8")
    args = parser.parse_args()

    logs = Path(tempfile.mkdtemp(prefix="livelog-bench-editors-"))
    env = {
        **BENCH_ENV,
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "CHANNEL_LAYER_PREFIX": f"bench-ed-{uuid.uuid4().hex[:6]}",
    }
    manage(env, "migrate", "--noinput", "-v", "0")
    children: list[Child] = []
    try:
        trigger = Child(
            "trigger", [PY, str(BENCH / "fanout_trigger.py"), "--reset-feed"], env, logs, pipes=True
        )
        feed = trigger.recv(60)["feed"]
        token = manage(env, "shell", code=SETUP.format(slug=SLUG, feed=feed)).splitlines()[-1]
        port = free_port()
        web = Child("web", procfile()["web"], {**env, "PORT": str(port)}, logs)
        children.append(web)
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or not web.alive():
                    raise RuntimeError(f"web did not start:\n{web.tail()}") from None
                time.sleep(0.1)
        hook = ["--mode", "hook", "--feed", str(feed), "--run", uuid.uuid4().hex[:6]]
        trigger = Child("trigger", [PY, str(BENCH / "fanout_trigger.py"), *hook], env, logs, pipes=True)
        children.append(trigger)
        trigger.recv(60)
        clients = [
            Child(f"client{i}", [PY, str(BENCH / "fanout_client.py")], env, logs, pipes=True)
            for i in range(args.clients)
        ]
        children += clients
        share = [
            args.readers // args.clients + (i < args.readers % args.clients) for i in range(args.clients)
        ]
        for client, n in zip(clients, share, strict=True):
            client.send(op="connect", n=n, host="127.0.0.1", port=port, path=f"/ws/live/?blog={SLUG}")
        opened = sum(client.recv(300)["open"] for client in clients)
        if opened != args.readers:
            raise RuntimeError(f"only {opened} of {args.readers} readers connected")
        time.sleep(2)
        url = f"http://127.0.0.1:{port}/api/blogs/{SLUG}/posts/"

        def wait(k):
            for client in clients:
                client.send(op="wait", lo=k, hi=k, hard=10, idle=5)
            return all(client.recv(30)["complete"] for client in clients)

        for k in range(3):  # warm-up
            post(url, token, K_POST - 10 + k)
            trigger.call(op="one", k=K_ENTRY - 10 + k)
        posts, entries = {}, {}
        for k in range(args.posts):
            started = time.monotonic()
            posts[K_POST + k] = post(url, token, K_POST + k)
            wait(K_POST + k)
            time.sleep(max(0, args.gap - (time.monotonic() - started)))
            started = time.monotonic()
            entries[K_ENTRY + k] = trigger.call(op="one", k=K_ENTRY + k)["t_commit"]
            wait(K_ENTRY + k)
            time.sleep(max(0, args.gap - (time.monotonic() - started)))
        stats = {}
        for client in clients:
            for lo, hi in ((K_POST, K_POST + args.posts - 1), (K_ENTRY, K_ENTRY + args.posts - 1)):
                for k, (count, dups, _first, last) in client.call(op="report", lo=lo, hi=hi)["stats"].items():
                    seen = stats.setdefault(int(k), [0, 0, 0.0])
                    seen[0] += count
                    seen[1] += dups
                    seen[2] = max(seen[2], last)
        complete = [k for k in [*posts, *entries] if stats.get(k, [0])[0] == args.readers]
        lost = len(posts) + len(entries) - len(complete)
        from_answer = [(stats[k][2] - posts[k][1]) * 1000 for k in posts if k in complete]
        from_call = [(stats[k][2] - posts[k][0]) * 1000 for k in posts if k in complete]
        api = [(posts[k][1] - posts[k][0]) * 1000 for k in posts]
        baseline = [(stats[k][2] - entries[k]) * 1000 for k in entries if k in complete]

        def row(name, values):
            return (
                f"| {name} | {len(values)} | {quantile(values, 0.5):.1f} | {quantile(values, 0.99):.1f} | "
                f"{max(values):.1f} |"
            )

        p99, base = quantile(from_answer, 0.99), quantile(baseline, 0.99)
        report = "\n".join(
            [
                f"Readers of the blog: {args.readers} (`/ws/live/?blog={SLUG}`, {args.clients} client "
                f"processes); web: the Procfile's uvicorn; {time.strftime('%Y-%m-%d %H:%M')}",
                "",
                "| measure | n | p50 ms | p99 ms | max ms |",
                "| --- | --- | --- | --- | --- |",
                row("post: API answer → last reader", from_answer),
                row("post: API request sent → last reader", from_call),
                row("post: the API call itself", api),
                row("baseline, feed entry: COMMIT → last reader", baseline),
                "",
                f"p99 from the API's answer: **{p99:.1f} ms** (target < 250 ms); "
                f"{p99 / base:.2f}× the feed entry's p99 in the same run. "
                f"Messages that did not reach every reader: {lost}.",
            ]
        )
        print(report)
    finally:
        for child in reversed(children):
            child.stop()
        print(f"(logs: {logs})", file=sys.stderr)


if __name__ == "__main__":
    main()
