"""The page in a real headless Chromium: entries appear live, without a reload."""

import os
import tempfile
import time

import pytest

from feeds.models import Entry, Feed
from tests.feedserver import GrowingFeed
from tests.procs import Proc, free_port, http_ok, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.mark.django_db(transaction=True)
def test_an_appended_item_appears_on_the_open_page_without_a_reload(stack, feed_server, browser):
    web = stack.pipeline()
    feed = GrowingFeed(feed_server, "/page.xml", "page")
    feed.append()
    Feed.objects.create(url=feed.url, interval=5)
    wait_until(lambda: Entry.objects.count() == 1, 20, what="first fetch\n" + stack.logs())

    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(web + "/")
    page.wait_for_selector("#status[data-state=live]", timeout=10_000)
    assert page.locator(".entry").count() == 1
    page.evaluate("window.__notReloaded = true")

    feed.append()
    page.wait_for_selector("text=page item 2", timeout=10_000)
    titles = page.locator(".entry .title").all_inner_texts()
    assert titles == ["page item 2", "page item 1"]
    assert page.evaluate("window.__notReloaded") is True
    assert errors == []


def test_make_run_serves_the_demo_feed_live(browser):
    port = free_port()
    database = tempfile.NamedTemporaryFile(suffix=".sqlite3", delete=False)  # noqa: SIM115
    env = {
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "DATABASE_URL": f"sqlite:///{database.name}",
        "SECRET_KEY": "",
        "DEBUG": "",
    }
    proc = Proc("make-run", "make run", env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_ok(url + "/"), 90, what=f"make run\n{proc.output()}")
        assert f"Livelog is running at {url}/" in proc.output()
        assert "/admin/" in proc.output()
        page = browser.new_page()
        page.goto(url + "/")
        page.wait_for_selector("#status[data-state=live]", timeout=10_000)
        before = set(page.locator(".entry .title").all_inner_texts())
        started = time.monotonic()
        page.wait_for_function(
            "(n) => document.querySelectorAll('.entry').length > n", arg=len(before), timeout=10_000
        )
        assert time.monotonic() - started < 10
        after = page.locator(".entry .title").all_inner_texts()
        assert after[0] not in before
        # The demo's two feeds (live/demo.py): one entry every 4 s, and one every 15 s.
        assert after[0].startswith(("Demo entry", "Agency flash"))
    finally:
        proc.stop()
        os.unlink(database.name)
