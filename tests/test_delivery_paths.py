"""Live delivery through the Procfile's uvicorn on each path: shared frames (compressed when the
client offers permessage-deflate, as browsers do, plain when it offers nothing) and the standard
ASGI path (LIVE_SHARED_FRAMES=false, or uvicorn's private protocol gone). Readers get the same."""

import json
import os
from pathlib import Path

import pytest

from feeds.models import Entry, Feed
from feeds.store import store
from tests.factories import document, item
from tests.procs import wait_until
from tests.wsclient import LiveClient, payload, raw_connect, read_frame

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PATHS = {"shared frames": {}, "ASGI": {"LIVE_SHARED_FRAMES": "false"}}
OFFERS = {"deflate offered": "deflate", "nothing offered": None}


def expected(after: int, feed: Feed | None = None) -> list[tuple[str, int, str]]:
    """What a reader who has seen every change up to `after` is owed, from the database."""
    rows = Entry.objects.filter(seq__gt=after).order_by("seq")
    if feed is not None:
        rows = rows.filter(feed=feed)
    return [("entry.created" if e.created_seq > after else "entry.updated", e.pk, e.cursor) for e in rows]


def received(client: LiveClient) -> list[tuple[str, int, str]]:
    return [(m["type"], m["entry"]["id"], m["cursor"]) for m in list(client.messages)]


def assert_gets(client: LiveClient, owed: list, after: int):
    wait_until(lambda: len(client.messages) >= len(owed), 20, what=f"{len(owed)} messages")
    assert received(client) == owed
    cursor = after
    for message in client.messages:
        # A reader whose cursor is below `prev` would think it missed something.
        assert "prev" not in message or int(message["prev"]) <= cursor
        cursor = int(message["cursor"])


def latest() -> int:
    entry = Entry.objects.order_by("-seq").first()
    return entry.seq if entry else 0


@pytest.mark.parametrize("offer", OFFERS.values(), ids=OFFERS.keys())
@pytest.mark.parametrize("path", PATHS.values(), ids=PATHS.keys())
def test_each_path_replays_then_relays_every_change_once_in_order(stack, writes, path, offer):
    stack.env.update(path)
    # Room for a few events only: an old cursor replays from the database, a recent one from memory.
    stack.env["LIVE_HISTORY_BYTES"] = "6000"
    web, _ = stack.web()
    wire = Feed.objects.create(url="https://example.com/wire.xml", title="Wire")
    sport = Feed.objects.create(url="https://example.com/sport.xml", title="Sport")
    writes(store, wire, document(*[item(f"w{n}") for n in range(4)]))
    start = latest()
    writes(store, sport, document(item("s0")))
    writes(store, wire, document(item("w1", title="w1, corrected")))  # told as created after `start`
    recent = latest()
    writes(store, wire, document(item("w9")))

    replaying = {
        (0, None): LiveClient(web, "after=0", compression=offer),
        (start, None): LiveClient(web, f"after={start}", compression=offer),
        (start, wire): LiveClient(web, f"after={start}&feed={wire.pk}", compression=offer),
    }
    readers = dict(replaying)
    try:
        for (after, feed), client in replaying.items():
            assert_gets(client, expected(after, feed), after)
        now = latest()
        assert recent < now
        readers[(now, None)] = LiveClient(web, "", compression=offer)
        readers[(now, sport)] = LiveClient(web, f"feed={sport.pk}", compression=offer)
        replayed = {key: received(client) for key, client in readers.items()}
        writes(store, sport, document(item("s1"), item("s2")))
        writes(store, wire, document(item("w9", title="w9, corrected")))
        writes(store, sport, document(item("s0", title="s0, corrected")))
        changes = list(Entry.objects.filter(seq__gt=now).order_by("seq"))
        assert len(changes) == 4
        for (after, feed), client in readers.items():
            live = [
                ("entry.created" if e.created_seq == e.seq else "entry.updated", e.pk, e.cursor)
                for e in changes
                if feed is None or e.feed_id == feed.pk
            ]
            assert_gets(client, replayed[(after, feed)] + live, after)
            assert client.closed_code is None
    finally:
        for client in readers.values():
            client.close()


def test_an_event_is_one_compressed_frame_for_every_socket_that_offered_deflate(stack, writes):
    web, _ = stack.web()
    feed = Feed.objects.create(url="https://example.com/wire.xml", title="Wire")
    browsers = [raw_connect(web) for _ in range(3)]
    plain, plain_headers = raw_connect(web, offer=None)
    for _, headers in browsers:
        assert "sec-websocket-extensions: permessage-deflate; server_no_context_takeover" in headers
    assert "sec-websocket-extensions" not in plain_headers
    summary = "<p>" + "A long summary that repeats, as HTML and JSON do. " * 40 + "Ünïcödé ✓</p>"
    try:
        writes(store, feed, document(item("big", summary=summary)))
        frames = [read_frame(sock) for sock, _ in browsers]
        uncompressed = read_frame(plain)
        assert frames[0][0] == 0xC1  # FIN, RSV1 (compressed), text
        assert uncompressed[0] == 0x81  # FIN, text
        assert frames[0] == frames[1] == frames[2]  # the same bytes, compressed once
        assert len(frames[0]) < len(uncompressed) / 3
        # Without context takeover, each message inflates on its own (RFC 7692, section 7.2.2).
        text = payload(frames[0]).decode()
        assert text == payload(uncompressed).decode()
        assert json.loads(text)["entry"]["summary_html"] == summary
    finally:
        for sock, _ in [*browsers, (plain, "")]:
            sock.close()


MOVED = """
import importlib, sys
sys.modules["uvicorn.protocols.websockets.moved_sansio"] = importlib.import_module(
    "uvicorn.protocols.websockets.websockets_sansio_impl"
)
sys.modules["uvicorn.protocols.websockets.websockets_sansio_impl"] = None  # gone: ImportError
import uvicorn.config
uvicorn.config.WS_PROTOCOLS["websockets-sansio"] = (
    "uvicorn.protocols.websockets.moved_sansio:WebSocketsSansIOProtocol"
)
"""


def test_if_uvicorn_moves_its_protocol_the_web_process_serves_through_asgi(stack, writes, tmp_path: Path):
    (tmp_path / "sitecustomize.py").write_text(MOVED)  # a uvicorn release that renamed the module
    stack.env["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    stack.env["METRICS_TOKEN"] = "s3cret"
    web, proc = stack.web()
    assert "live events use the standard ASGI path" in proc.output()
    import urllib.request

    request = urllib.request.Request(web + "/metrics", headers={"Authorization": "Bearer s3cret"})
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - the test's own server
        metrics = response.read().decode()
    assert 'livelog_delivery_path{path="asgi"} 1.0' in metrics
    assert 'livelog_delivery_path{path="shared_frames"} 0.0' in metrics
    feed = Feed.objects.create(url="https://example.com/wire.xml", title="Wire")
    client = LiveClient(web)
    try:
        writes(store, feed, document(item("a"), item("b")))
        assert_gets(client, expected(0), 0)
    finally:
        client.close()


def server_rss(proc) -> int:
    import psutil

    process = psutil.Process(proc.pid)
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)])


def test_an_idle_reader_keeps_nothing_of_its_handshake(stack):
    """What a browser sends with its handshake (cookies, a user agent) is not held for the socket's
    life: readers with 12 KB of headers each cost the web process what readers with none do."""
    import time

    stack.env["WEB_MAX_CONNECTIONS_PER_CLIENT"] = "0"  # every reader here comes from 127.0.0.1
    web, proc = stack.web()
    held = [raw_connect(web)[0] for _ in range(50)]  # warm-up: the hub, pools, first allocations
    time.sleep(1)
    padding = "".join(f"X-Padding-{n}: {'p' * 1000}\r\n" for n in range(12))
    try:
        per_socket = {}
        for name, headers in (("plain", ""), ("12 KB of headers", padding)):
            before = server_rss(proc)
            held += [raw_connect(web, headers=headers)[0] for _ in range(200)]
            time.sleep(1)
            per_socket[name] = (server_rss(proc) - before) / 200
        # Kept, they would cost about 24 KB more each (the request's parsed headers and the
        # scope's copy); freed, the two differ by allocator noise.
        assert per_socket["12 KB of headers"] - per_socket["plain"] < 6 * 1024, per_socket
    finally:
        for sock in held:
            sock.close()
