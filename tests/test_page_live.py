"""The reader page in a real Chromium against the real processes: what a reader who leaves it open
all day sees. Entries are written by the test (the post-save hook pushes them through Redis);
test_browser.py and test_page_safety.py go through a served feed and the worker."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from feeds.models import Entry, Feed
from feeds.store import store
from tests.factories import document, item

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
LIVE = "#status[data-state=live]"


def publish(feed, *names, **fields):
    """Store entries named `names` (oldest first, so the last is on top), titled by name."""
    items = [item(name, title=fields.get("title", name), published=fields.get("published")) for name in names]
    store(feed, document(*reversed(items), title=feed.title))


def entry_id(title):
    return Entry.objects.get(title=title).pk


def titles(page):
    return page.locator("#entries .entry .title").all_inner_texts()


def top_of(page, selector):
    return page.eval_on_selector(selector, "node => node.getBoundingClientRect().top")


def set_hidden(page, hidden):
    # Headless Chromium keeps every page visible: stand in for the tab being switched away.
    page.evaluate(
        """hidden => {
            const state = {hidden: hidden, visibilityState: hidden ? "hidden" : "visible"};
            for (const name in state)
                Object.defineProperty(document, name, {configurable: true, get: () => state[name]});
            document.dispatchEvent(new Event("visibilitychange"));
        }""",
        hidden,
    )


def test_new_entries_go_on_top_and_never_move_what_the_reader_is_reading(stack, writes, open_page):
    web, _ = stack.web()
    feed = Feed.objects.create(url="https://example.com/wire.xml", title="Wire")
    writes(publish, feed, *[f"old {n}" for n in range(1, 31)])
    page = open_page(web + "/", viewport={"width": 1000, "height": 700})
    page.wait_for_selector(LIVE)

    # At the top, a new entry simply appears on top, and is announced to screen readers.
    writes(publish, feed, "new 1")
    page.wait_for_function("() => document.querySelector('.entry .title').textContent === 'new 1'")
    assert titles(page)[:2] == ["new 1", "old 30"]
    assert page.is_hidden("#new-entries")
    page.wait_for_function(
        "() => document.getElementById('announcer').textContent === 'New entry from Wire: new 1'"
    )

    # Scrolled down, the entry being read stays exactly where it is and the button counts up.
    reading = f"#entry-{entry_id('old 20')}"
    page.eval_on_selector(reading, "node => window.scrollTo(0, node.offsetTop - 200)")
    page.wait_for_timeout(100)
    before = top_of(page, reading)
    for n, label in ((2, "1 new entry"), (3, "2 new entries"), (4, "3 new entries")):
        writes(publish, feed, f"new {n}")
        page.wait_for_function(
            "label => document.getElementById('new-entries').textContent === label", arg=label
        )
    assert page.inner_text("#new-entries") == "3 new entries"
    assert page.is_visible("#new-entries")
    assert abs(top_of(page, reading) - before) < 1
    assert titles(page)[:4] == ["new 4", "new 3", "new 2", "new 1"]

    # While the tab is hidden, the count is in its title too.
    set_hidden(page, True)
    writes(publish, feed, "new 5")
    page.wait_for_function("() => document.title === '(4) Livelog'")
    assert abs(top_of(page, reading) - before) < 1
    set_hidden(page, False)
    assert page.title() == "Livelog"
    assert page.inner_text("#new-entries") == "4 new entries"

    # The button takes the reader (and the keyboard focus) to the newest entry.
    page.click("#new-entries")
    page.wait_for_function("() => window.scrollY === 0")
    page.wait_for_selector("#new-entries", state="hidden")
    newest = entry_id("new 5")
    assert page.evaluate("document.activeElement.id") == f"entry-{newest}"
    assert page.trapped()["errors"] == []


def test_scrolling_down_loads_older_entries_and_the_page_stays_bounded(stack, writes, open_page):
    web, _ = stack.web()
    feed = Feed.objects.create(url="https://example.com/wire.xml", title="Wire")
    writes(publish, feed, *[f"e{n}" for n in range(1, 261)])
    page = open_page(web + "/", viewport={"width": 1000, "height": 800})
    page.wait_for_selector(LIVE)
    assert titles(page) == [f"e{n}" for n in range(260, 210, -1)]  # the server's first page

    def scroll_to_end_and_wait():
        count = page.locator("#entries .entry").count()
        last = page.eval_on_selector("#entries .entry:last-child", "node => node.id")
        page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
        before = top_of(page, f"#{last}")
        page.wait_for_function(
            "([n, last]) => document.querySelectorAll('#entries .entry').length !== n"
            " || document.getElementById('entries').lastElementChild.id !== last",
            arg=[count, last],
        )
        page.wait_for_timeout(50)
        # What the reader was looking at is still in the same place, whatever was added or dropped.
        assert abs(top_of(page, f"#{last}") - before) < 1

    for _ in range(5):
        scroll_to_end_and_wait()
    page.wait_for_selector("text=No older entries.")
    # Never more than 200 entries: the newest were dropped from the top as older ones came in.
    assert titles(page) == [f"e{n}" for n in range(200, 0, -1)]
    assert page.inner_text("#new-entries") == "Newest entries"

    # The top is no longer the newest: a new entry is counted, not inserted out of place.
    writes(publish, feed, "e261")
    page.wait_for_function("() => document.getElementById('new-entries').textContent === '1 new entry'")
    assert page.locator("#entries .entry").count() == 200
    page.click("#new-entries")
    page.wait_for_function("() => document.querySelector('#entries .title').textContent === 'e261'")
    page.wait_for_function("() => window.scrollY === 0")
    assert titles(page) == [f"e{n}" for n in range(261, 211, -1)]
    assert page.is_hidden("#new-entries")

    # Without script, the same history is a chain of server-rendered pages.
    older = page.get_attribute("#older", "href")
    assert older.startswith("/?before=")
    assert page.trapped()["errors"] == []


def test_corrections_and_removals_reach_every_open_page(stack, writes, open_page):
    web, _ = stack.web()
    feed = Feed.objects.create(url="https://example.com/wire.xml", title="Wire")
    writes(publish, feed, "first", "second", "third")
    second = entry_id("second")
    index = open_page(web + "/")
    permalink = open_page(f"{web}/entries/{second}/")
    index.wait_for_selector(LIVE)
    permalink.wait_for_selector(LIVE)
    assert permalink.inner_text(".title") == "second"

    # The publisher corrects the entry: it changes in place, marked, on both pages.
    writes(store, feed, document(item("second", title="second, corrected"), title="Wire"))
    for page in (index, permalink):
        page.wait_for_selector(f"#entry-{second} .updated-mark")
        assert page.inner_text(f"#entry-{second} .title") == "second, corrected"
    assert titles(index) == ["third", "second, corrected", "first"]

    # An editor removes it with the admin action: it leaves the list and the permalink says so.
    admin = get_user_model().objects.create_superuser("editor", "editor@example.com", "pw-not-secret")

    def admin_action(action):
        client = Client()
        client.force_login(admin)
        response = client.post("/admin/feeds/entry/", {"action": action, "_selected_action": [second]})
        assert response.status_code == 302

    writes(admin_action, "remove")
    index.wait_for_selector(f"#entry-{second}", state="detached")
    assert titles(index) == ["third", "first"]
    permalink.wait_for_selector(".removed-note")
    assert permalink.locator(".title").count() == 0

    # A reload agrees with what the open pages show.
    index.reload()
    assert titles(index) == ["third", "first"]
    assert permalink.goto(f"{web}/entries/{second}/").status == 404

    # Removed by mistake: the editor restores it, and it goes back in its place on open pages.
    index.wait_for_selector(LIVE)

    writes(admin_action, "restore")
    index.wait_for_selector(f"#entry-{second}")
    assert titles(index) == ["third", "second, corrected", "first"]
    index.reload()
    assert titles(index) == ["third", "second, corrected", "first"]
    assert index.trapped()["errors"] == permalink.trapped()["errors"] == []


def test_the_source_filter_limits_the_list_and_the_live_updates_and_is_in_the_url(stack, writes, open_page):
    web, _ = stack.web()
    wire = Feed.objects.create(url="https://example.com/wire.xml", title="Wire")
    sports = Feed.objects.create(url="https://example.com/sports.xml", title="Sports")
    writes(publish, wire, "wire 1")
    writes(publish, sports, "sports 1")
    writes(publish, wire, "wire 2")
    page = open_page(web + "/")
    page.wait_for_selector(LIVE)
    page.evaluate("window.notReloaded = true")
    assert titles(page) == ["wire 2", "sports 1", "wire 1"]

    page.select_option("#feed-filter", str(wire.pk))
    page.wait_for_url(f"{web}/?feed={wire.pk}")
    page.wait_for_function("() => document.querySelectorAll('#entries .entry').length === 2")
    assert titles(page) == ["wire 2", "wire 1"]
    assert page.title() == "Wire · Livelog"
    page.wait_for_selector(LIVE)

    writes(publish, sports, "sports 2")
    writes(publish, wire, "wire 3")
    page.wait_for_function("() => document.querySelector('#entries .title').textContent === 'wire 3'")
    assert titles(page) == ["wire 3", "wire 2", "wire 1"]  # sports 2 was sent before and never came

    # Back: all sources again, including what arrived meanwhile; a source link filters too.
    page.go_back()
    page.wait_for_url(web + "/")
    page.wait_for_function("() => document.querySelectorAll('#entries .entry').length === 5")
    assert titles(page) == ["wire 3", "sports 2", "wire 2", "sports 1", "wire 1"]
    assert page.input_value("#feed-filter") == ""
    page.click(f"#entry-{entry_id('sports 2')} .source")
    page.wait_for_url(f"{web}/?feed={sports.pk}")
    page.wait_for_function("() => document.querySelectorAll('#entries .entry').length === 2")
    assert page.input_value("#feed-filter") == str(sports.pk)
    assert page.evaluate("window.notReloaded") is True

    # The filtered URL, shared: the server renders the filtered list, the socket stays filtered.
    shared = open_page(f"{web}/?feed={sports.pk}")
    shared.wait_for_selector(LIVE)
    assert titles(shared) == ["sports 2", "sports 1"]
    assert shared.input_value("#feed-filter") == str(sports.pk)
    writes(publish, wire, "wire 4")
    writes(publish, sports, "sports 3")
    shared.wait_for_function("() => document.querySelector('#entries .title').textContent === 'sports 3'")
    assert titles(shared) == ["sports 3", "sports 2", "sports 1"]
    assert page.trapped()["errors"] == shared.trapped()["errors"] == []


def test_the_indicator_follows_the_connection_and_what_was_missed_is_filled_in(stack, writes, open_page):
    web, server = stack.web()
    port = int(web.rsplit(":", 1)[1])
    feed = Feed.objects.create(url="https://example.com/wire.xml", title="Wire")
    writes(publish, feed, "before")
    page = open_page(web + "/")
    page.wait_for_selector(LIVE)
    assert page.is_hidden("#retry")

    # The server goes away; entries are published meanwhile; it comes back on the same port.
    server.stop()
    page.wait_for_selector("#status[data-state=reconnecting]", timeout=5_000)
    assert page.inner_text("#status .label") == "Reconnecting…"
    writes(publish, feed, "missed 1", "missed 2")
    stack.web(port=port)
    page.wait_for_selector(LIVE, timeout=20_000)
    page.wait_for_function("() => document.querySelectorAll('#entries .entry').length === 3")
    assert titles(page) == ["missed 2", "missed 1", "before"]

    # The browser goes offline: the indicator says so and offers a retry, which works once back.
    page.context.set_offline(True)
    page.wait_for_selector("#status[data-state=offline]")
    assert page.is_visible("#retry")
    writes(publish, feed, "while offline")
    page.click("#retry")  # still offline: it stays honest
    assert page.get_attribute("#status", "data-state") == "offline"
    page.context.set_offline(False)
    page.wait_for_selector(LIVE)
    page.wait_for_function("() => document.querySelector('#entries .title').textContent === 'while offline'")
    assert page.trapped()["errors"] == []


def test_a_change_lost_on_the_way_is_noticed_by_the_next_one_and_filled_in(stack, writes, open_page):
    web, _ = stack.web()
    feed = Feed.objects.create(url="https://example.com/wire.xml", title="Wire")
    writes(publish, feed, "before")
    sockets, lost = [], []

    def lose_one_message(context):
        # Between server and page (as a broken proxy might): "lost" never reaches the page.
        def route(page_side):
            server_side = page_side.connect_to_server()
            sockets.append(page_side)

            def relay(message):
                if '"title":"lost"' in message and not lost:
                    lost.append(message)
                else:
                    page_side.send(message)

            server_side.on_message(relay)

        context.route_web_socket("**/ws/live/**", route)

    page = open_page(web + "/", setup=lose_one_message)
    page.wait_for_selector(LIVE)
    writes(publish, feed, "lost")
    for _ in range(100):  # Playwright runs the route's handler while the page is waited on
        if lost:
            break
        page.wait_for_timeout(100)
    assert lost, "the message to lose never came"
    assert len(sockets) == 1
    writes(publish, feed, "next")
    # "next" says which change came before it; the page never saw that one, so it resumes from
    # its cursor and the replay brings both, in order, once each.
    page.wait_for_function("() => document.querySelectorAll('#entries .entry').length === 3")
    assert titles(page) == ["next", "lost", "before"]
    assert len(lost) == 1
    assert len(sockets) == 2
    page.wait_for_timeout(500)
    assert titles(page) == ["next", "lost", "before"]
    assert page.trapped()["errors"] == []


def test_the_retry_button_reconnects_at_once_after_the_page_gave_up_waiting(stack, writes, open_page):
    web, server = stack.web()
    port = int(web.rsplit(":", 1)[1])
    feed = Feed.objects.create(url="https://example.com/wire.xml", title="Wire")
    page = open_page(web + "/")
    page.clock.install()
    page.reload()
    page.wait_for_selector(LIVE)
    # The page's timers now run only when the test says so.
    page.clock.pause_at(page.evaluate("() => Date.now()") + 1_000)
    server.stop()
    page.wait_for_selector("#status[data-state=reconnecting]", timeout=5_000)
    # Let the backoff run its course: each attempt fails at once, the waits grow, the page gives up.
    for _ in range(30):
        if page.get_attribute("#status", "data-state") == "offline":
            break
        page.clock.run_for(5_000)
        page.wait_for_timeout(100)
    assert page.get_attribute("#status", "data-state") == "offline"
    assert page.is_visible("#retry")
    stack.web(port=port)
    writes(publish, feed, "after the outage")
    page.wait_for_timeout(500)
    assert page.get_attribute("#status", "data-state") == "offline"  # no timer will fire meanwhile
    page.click("#retry")
    page.wait_for_selector(LIVE, timeout=5_000)
    page.wait_for_selector("text=after the outage")


def test_times_are_relative_stay_current_and_show_the_exact_local_time(stack, writes, open_page):
    web, _ = stack.web()
    feed = Feed.objects.create(url="https://example.com/wire.xml", title="Wire")
    now = datetime.now(UTC).replace(microsecond=0)
    writes(publish, feed, "yesterday", published=now - timedelta(days=2))
    writes(publish, feed, "earlier", published=now - timedelta(hours=3))
    writes(publish, feed, "recent", published=now - timedelta(minutes=2, seconds=5))
    page = open_page(web + "/", timezone_id="Asia/Tokyo", locale="en-US")
    page.clock.install()
    page.reload()
    page.wait_for_selector(LIVE)
    times = page.locator("#entries time").all_inner_texts()
    assert times[:2] == ["2 min ago", "3 h ago"]
    exact = page.get_attribute(f"#entry-{entry_id('recent')} time", "title")
    tokyo = (now - timedelta(minutes=2, seconds=5)).astimezone(ZoneInfo("Asia/Tokyo"))
    assert f"{tokyo.hour % 12 or 12}:{tokyo:%M}:{tokyo:%S}" in exact
    assert "GMT+9" in exact
    page.clock.run_for(3 * 60_000)
    assert page.inner_text(f"#entry-{entry_id('recent')} time") == "5 min ago"

    # Before any script runs, the server's first paint already shows the time, in UTC.
    bare = open_page(web + "/", java_script_enabled=False)
    assert bare.inner_text(f"#entry-{entry_id('recent')} time").endswith(" UTC")
    assert bare.is_hidden("#status")  # no script, no live state to claim


def test_a_compressed_live_update_arrives_intact(stack, writes, open_page):
    web, _ = stack.web()
    feed = Feed.objects.create(url="https://example.com/wire.xml", title="Wire")
    writes(publish, feed, "before")
    page = open_page(web + "/")
    # What Chromium negotiated, from its own network log: the page's socket is opened again with
    # the log on.
    handshakes = []
    cdp = page.context.new_cdp_session(page)
    cdp.on("Network.webSocketHandshakeResponseReceived", lambda event: handshakes.append(event))
    cdp.send("Network.enable")
    page.reload()
    page.wait_for_selector(LIVE)
    # Usually one; a second when the old page's reconnect timer fired while a slow reload was
    # still fetching the new page (seen under CI load). Each negotiated the same.
    assert handshakes
    for handshake in handshakes:
        headers = {k.lower(): v for k, v in handshake["response"]["headers"].items()}
        assert headers["sec-websocket-extensions"].startswith(
            "permessage-deflate; server_no_context_takeover"
        )

    paragraphs = [f"Paragraph {n}: the council voted — «oui» to the plan, 投票 ✓{'x' * n}" for n in range(40)]
    summary = "".join(f"<p>{text}</p>" for text in paragraphs)
    title = "Ünïcödé title ✓" + " long" * 30

    def publish_long():
        store(feed, document(item("long", title=title, summary=summary)))

    writes(publish_long)
    page.wait_for_function("() => document.querySelectorAll('#entries .entry').length === 2")
    assert titles(page)[0] == title
    shown = page.locator("#entries .entry").first.locator(".summary p").all_inner_texts()
    assert shown == paragraphs
    assert page.trapped()["errors"] == []
