"""Fire entries the way a worker does, from a process of its own.

`hook` mode: Django set up against the bench database; each entry goes through
feeds.store.store(), so the change log's entry_changed -> on_commit -> the live push runs exactly as
in a Celery worker. `publish` mode: the same event text PUBLISHed on a Redis channel, for the bare server.
The entry's title carries the bench key and the send time: "fanout k=<k> t=<time.time()>".
Driven by fanout.py over stdin/stdout, one JSON object per line.
"""

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

# The app under test: this repository, or another tree of it (fanout.py --app-dir).
APP = Path(os.environ.get("FANOUT_APP_DIR") or Path(__file__).resolve().parent.parent)
sys.path.insert(0, str(APP))
PROTO = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)  # Django's log lines must not mix with the replies

FEED_URL = "https://fanout.bench.invalid/feed.xml"
FEED_TITLE = "Fanout bench"
# A real entry's summary in size and kind: prose and the markup feeds carry (paragraphs, links, a
# list, a quote), no repetition. Events of real entries of 1 to 2.5 KB from ../shared/corpus compress
# to 48-56 % (median 53 %) of their plain frame; this one to about the median.
SUMMARY = (
    "<p>The city council voted 7 to 4 on Tuesday night to approve the "
    '<a href="https://example.com/news/2026/transit-plan"'
    ' rel="noopener noreferrer nofollow">revised transit plan</a>, ending a debate '
    "that had stretched over three sessions and drawn more than two hundred public comments. The plan "
    'adds <a href="https://example.com/news/2026/bus-routes"'
    ' rel="noopener noreferrer nofollow">four bus routes</a> on the east side, '
    "extends evening service until midnight, and funds a pilot of free fares for riders under "
    "eighteen.</p>"
    "<blockquote><p>We heard from parents, from shift workers, from students. This plan is for "
    "them.</p></blockquote>"
    '<p>Opponents, led by <a href="https://example.com/people/council-member-ortiz"'
    ' rel="noopener noreferrer nofollow">Council Member '
    "Ortiz</a>, argued that the fare pilot would cost $2.3 million a year without a clear way to "
    "measure its effect. Supporters pointed to "
    '<a href="https://example.com/data/ridership"'
    ' rel="noopener noreferrer nofollow">ridership figures</a> from neighbouring districts, '
    "where similar programmes raised weekday boardings by about 12 percent within a year.</p>"
    "<ul><li><strong>Route 31:</strong> Harbor Street to the university, every 15 minutes</li>"
    "<li><strong>Route 44:</strong> Eastgate loop, weekends included</li></ul>"
    "<p><em>Updated 21:40:</em> the mayor said she would sign the measure on Friday.</p>"
)


def title(k: int, sent: float) -> str:
    return f"fanout k={k} t={sent:.6f}"


def setup_django():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def reset_feed() -> int:
    """A fresh bench feed in the bench database (the old one and its entries are deleted)."""
    setup_django()
    from feeds.models import Feed

    Feed.objects.filter(url=FEED_URL).delete()
    return Feed.objects.create(url=FEED_URL, title=FEED_TITLE, site_url="https://example.com/").pk


class Hook:
    """Store entries with feeds.store.store(), as fetch_feed does.

    A pre_save receiver of our own registers an on-commit callback before the hook (on the change
    log's entry_changed) registers its push, so it runs right after COMMIT and splits store()'s time
    into the database part and the push (assuming the push is sent on commit, as the hook does).
    """

    def __init__(self, feed_id: int, run: str):
        setup_django()
        from django.db import transaction
        from django.db.models.signals import pre_save

        from feeds.changelog import entry_changed
        from feeds.models import Entry, Feed
        from feeds.store import store
        from tests.factories import document, item

        self.store, self.document, self.item = store, document, item
        self.feed = Feed.objects.get(pk=feed_id)
        self.run = run
        self.commits: list[tuple[float, float]] = []

        def mark_commit(sender, instance, **kwargs):
            transaction.on_commit(lambda: self.commits.append((time.perf_counter(), time.time())))

        pre_save.connect(mark_commit, sender=Entry, weak=False, dispatch_uid="fanout.mark_commit")

        # The hook's own part inside the transaction (it serializes the event there): the same
        # receiver, wrapped in a timer.
        self.serialize = 0.0
        from live.signals import push_entry

        def timed_push_entry(sender, **kwargs):
            began = time.perf_counter()
            push_entry(sender, **kwargs)
            self.serialize += time.perf_counter() - began

        entry_changed.disconnect(dispatch_uid="live.push_entry")
        entry_changed.connect(timed_push_entry, weak=False, dispatch_uid="live.push_entry")

    def entry(self, k: int, sent: float):
        return self.item(f"fanout-{self.run}-{k}", title=title(k, sent), summary=SUMMARY)

    def timed_store(self, items: list) -> dict:
        self.commits.clear()
        self.serialize = 0.0
        sent = time.time()
        started = time.perf_counter()
        new, _updated = self.store(self.feed, self.document(*items(sent), title=FEED_TITLE))
        ended = time.perf_counter()
        committed, committed_at = self.commits[0] if self.commits else (ended, time.time())
        return {
            "t": sent,
            "t_commit": committed_at,
            "dt": ended - started,
            "db": committed - started,
            "push": ended - committed,
            "serialize": self.serialize,
            "new": new,
        }

    def one(self, k: int) -> dict:
        return self.timed_store(lambda sent: [self.entry(k, sent)])

    def burst(self, lo: int, n: int) -> dict:
        """One fetched document with n new entries: one store() call, n pushes after its commit."""
        # store() takes a document newest first and stores oldest first: k ascends with the cursor.
        return self.timed_store(lambda sent: [self.entry(k, sent) for k in range(lo + n - 1, lo - 1, -1)])


class Publish:
    """PUBLISH an event of the same shape and size on Redis, for the bare broadcast server."""

    def __init__(self, redis_url: str, channel: str):
        import redis

        self.redis = redis.Redis.from_url(redis_url)
        self.channel = channel

    def text(self, k: int, sent: float) -> str:
        stamp = datetime.fromtimestamp(sent, UTC).isoformat().replace("+00:00", "Z")
        entry = {
            "id": k,
            "feed": {"id": 1, "title": FEED_TITLE},
            "title": title(k, sent),
            "link": f"https://example.com/fanout-{k}",
            "summary_html": SUMMARY,
            "author": "",
            "published": stamp,
            "updated": stamp,
        }
        message = {"type": "entry.created", "cursor": str(k), "entry": entry}
        return json.dumps(message, separators=(",", ":"), ensure_ascii=False)

    def one(self, k: int) -> dict:
        sent = time.time()
        started = time.perf_counter()
        self.redis.publish(self.channel, self.text(k, sent))
        return {"t": sent, "t_commit": sent, "dt": time.perf_counter() - started, "new": 1}

    def burst(self, lo: int, n: int) -> dict:
        sent = time.time()
        started = time.perf_counter()
        for k in range(lo, lo + n):
            self.redis.publish(self.channel, self.text(k, sent))
        return {"t": sent, "t_commit": sent, "dt": time.perf_counter() - started, "new": n}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--reset-feed", action="store_true", help="create the bench feed, print its id")
    parser.add_argument("--mode", choices=["hook", "publish"])
    parser.add_argument("--feed", type=int)
    parser.add_argument("--run", default="0")
    parser.add_argument("--redis")
    parser.add_argument("--channel")
    args = parser.parse_args()
    if args.reset_feed:
        PROTO.write(json.dumps({"feed": reset_feed()}) + "\n")
        return
    sender = Hook(args.feed, args.run) if args.mode == "hook" else Publish(args.redis, args.channel)
    PROTO.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "quit":
            return
        if cmd["op"] == "one":
            reply = sender.one(cmd["k"])
        elif cmd["op"] == "burst":
            reply = sender.burst(cmd["lo"], cmd["n"])
        else:
            reply = {"error": f"unknown op {cmd['op']}"}
        PROTO.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    main()
