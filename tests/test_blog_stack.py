"""Live blogs on the real stack: the Procfile's processes on PostgreSQL and Redis, real sockets and
Chromium. Two blogs share one feed and each has one feed of its own."""

import time
import urllib.error
import urllib.request

import pytest

from blogs.models import Blog, add_source, end_blog, remove_source
from feeds.models import Entry, Feed
from tests.procs import wait_until
from tests.wsclient import ResumingClient

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def two_blogs(shared, only_a, only_b):
    a = Blog.objects.create(slug="election", title="Election night", description="Results as they come")
    b = Blog.objects.create(slug="match", title="The match")
    for blog, feed in ((a, shared), (a, only_a), (b, shared), (b, only_b)):
        add_source(blog, feed)
    return a, b


def test_each_blogs_readers_get_exactly_its_entries_once_through_a_redis_restart(stack, own_redis, writes):
    # The test writes as a worker would (store, the hook, Redis): the web side is what is tested.
    stack.env["REDIS_URL"] = own_redis.url
    web, _ = stack.web()
    shared, only_a, only_b = (
        Feed.objects.create(url=f"https://example.com/{name}.xml", title=name)
        for name in ("shared", "a", "b")
    )
    writes(two_blogs, shared, only_a, only_b)
    readers = {
        "election": [ResumingClient(web, "0", "blog=election") for _ in range(2)],
        "match": [ResumingClient(web, "0", "blog=match") for _ in range(2)],
    }
    expected = {"election": (shared, only_a), "match": (shared, only_b)}
    try:
        for n in range(20):
            for feed in (shared, only_a, only_b):
                writes(publish, feed, f"{feed.title} {n}")
            if n == 5:
                readers["election"][0].disconnect_once()  # comes back with after=
            if n == 7:
                own_redis.kill()
            if n == 11:
                own_redis.start()
            time.sleep(0.5)
        assert Entry.objects.count() == 60
        for slug, clients in readers.items():
            wanted = set(Entry.objects.filter(feed__in=expected[slug]).values_list("id", flat=True))
            assert len(wanted) == 40
            for client in clients:
                wait_until(
                    lambda c=client, w=wanted: set(c.created_ids()) >= w,
                    40,
                    what=f"{slug} reader\n{stack.logs()}",
                )
        time.sleep(1)
        for slug, clients in readers.items():
            wanted = set(Entry.objects.filter(feed__in=expected[slug]).values_list("id", flat=True))
            for client in clients:
                ids = client.created_ids()
                assert set(ids) == wanted, f"{slug}: entries of another blog"
                assert len(ids) == len(wanted), f"{slug}: an entry twice"
                assert client.reconnects, "readers should have been told to resume"
    finally:
        for clients in readers.values():
            for client in clients:
                client.stop()


LIVE = "#status[data-state=live]"


def publish(feed, *names):
    from feeds.store import store
    from tests.factories import document, item

    store(feed, document(*(item(name, title=name) for name in names), title=feed.title))


def titles(page):
    return page.locator("#entries .entry .title").all_inner_texts()


def test_open_pages_lose_a_removed_source_and_are_told_the_blog_ended(stack, writes, open_page):
    web, _ = stack.web()
    shared = Feed.objects.create(url="https://example.com/shared.xml", title="Shared")
    only_a = Feed.objects.create(url="https://example.com/a.xml", title="Desk A")
    only_b = Feed.objects.create(url="https://example.com/b.xml", title="Desk B")
    writes(publish, shared, "shared 1")
    writes(publish, only_a, "a 1")
    writes(publish, only_b, "b 1")
    a, b = writes(two_blogs, shared, only_a, only_b)
    page_a = open_page(web + "/blogs/election/")
    page_b = open_page(web + "/blogs/match/")
    for page in (page_a, page_b):
        page.wait_for_selector(LIVE)
    assert page_a.inner_text("h1") == "Election night"
    assert sorted(titles(page_a)) == ["a 1", "shared 1"]
    assert sorted(titles(page_b)) == ["b 1", "shared 1"]

    # Live: each page gets its own blog's entries only.
    writes(publish, shared, "shared 2")
    writes(publish, only_a, "a 2")
    page_a.wait_for_function("() => document.querySelector('.entry .title').textContent === 'a 2'")
    page_b.wait_for_function("() => document.querySelector('.entry .title').textContent === 'shared 2'")
    assert "a 2" not in titles(page_b)

    # A source removed from one blog leaves its open pages, and not the other blog's.
    writes(remove_source, a, shared)
    page_a.wait_for_function(
        "() => ![...document.querySelectorAll('.entry .title')].some(t => t.textContent.startsWith('shared'))"
    )
    assert titles(page_a) == ["a 2", "a 1"]
    writes(publish, shared, "shared 3")
    page_b.wait_for_function("() => document.querySelector('.entry .title').textContent === 'shared 3'")
    assert titles(page_a) == ["a 2", "a 1"]

    # A source added brings its recent entries in, each in its place.
    writes(add_source, a, only_b)
    page_a.wait_for_function("() => document.querySelectorAll('.entry').length === 3")
    assert titles(page_a) == ["a 2", "b 1", "a 1"]  # by when each first appeared

    # Ending reaches the open page: it says so and stops listening.
    writes(end_blog, a)
    page_a.wait_for_selector("#status[data-state=ended]")
    assert "ended" in page_a.inner_text("#blog-state")
    page_a.wait_for_timeout(1500)
    assert page_a.evaluate("() => document.getElementById('status').dataset.state") == "ended"
    trapped = page_a.trapped()
    assert not trapped["errors"], trapped
    assert not trapped["console"], trapped
    assert not trapped["violations"], trapped

    # The ended blog's page is an archive: no socket, a validator, 304 when unchanged.
    with urllib.request.urlopen(web + "/blogs/election/", timeout=10) as response:  # noqa: S310
        etag = response.headers["ETag"]
        assert "public" in response.headers["Cache-Control"]
        assert response.headers["Last-Modified"]
        assert b"data-ended" in response.read()
    request = urllib.request.Request(web + "/blogs/election/", headers={"If-None-Match": etag})  # noqa: S310
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=10)  # noqa: S310
    assert answer.value.code == 304
    archive = open_page(web + "/blogs/election/")
    archive.wait_for_selector("#status[data-state=ended]")
    assert titles(archive) == ["a 2", "b 1", "a 1"]
