"""The admin and the two management commands."""

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from feeds.models import Entry, Feed
from feeds.store import store
from tests.factories import document, item
from tests.feedserver import rss

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("static_files")]


@pytest.fixture
def staff(admin_client):
    return admin_client


def test_the_feed_list_shows_state_and_costs_the_same_queries_for_more_feeds(staff):
    Feed.objects.create(url="https://example.com/1.xml")
    with CaptureQueriesContext(connection) as few:
        assert staff.get("/admin/feeds/feed/").status_code == 200
    for n in range(2, 12):
        feed = Feed.objects.create(url=f"https://example.com/{n}.xml", last_error="HTTP 500")
        store(feed, document(item(f"x{n}")))
    with CaptureQueriesContext(connection) as many:
        response = staff.get("/admin/feeds/feed/")
    assert len(many) == len(few)
    assert "HTTP 500" in response.content.decode()


def test_the_entry_list_has_no_n_plus_one(staff):
    feed = Feed.objects.create(url="https://example.com/1.xml")
    store(feed, document(item("a")))
    with CaptureQueriesContext(connection) as few:
        staff.get("/admin/feeds/entry/")
    for n in range(10):
        store(Feed.objects.create(url=f"https://example.com/f{n}.xml"), document(item(f"e{n}")))
    with CaptureQueriesContext(connection) as many:
        response = staff.get(f"/admin/feeds/entry/?feed__id__exact={feed.pk}&q=Title")
    assert response.status_code == 200
    assert len(many) <= len(few) + 1


def test_the_admin_refuses_a_private_feed_url(staff, settings):
    settings.FEEDS_ALLOW_PRIVATE_NETWORKS = False
    response = staff.post("/admin/feeds/feed/add/", {"url": "http://127.0.0.1/feed.xml", "interval": 5})
    assert response.status_code == 200
    assert Feed.objects.count() == 0
    assert "errorlist" in response.content.decode()


def test_enable_and_disable_actions(staff):
    feed = Feed.objects.create(url="https://example.com/1.xml", error_count=12, next_fetch_reason="paused")
    staff.post("/admin/feeds/feed/", {"action": "disable", "_selected_action": [feed.pk]})
    feed.refresh_from_db()
    assert not feed.enabled
    staff.post("/admin/feeds/feed/", {"action": "enable", "_selected_action": [feed.pk]})
    feed.refresh_from_db()
    assert feed.enabled
    assert feed.error_count == 0
    assert feed.next_fetch_reason == "interval"


def test_removing_an_entry_in_the_admin_keeps_a_tombstone(staff):
    feed = Feed.objects.create(url="https://example.com/1.xml")
    store(feed, document(item("a")))
    entry = Entry.objects.get()
    staff.post("/admin/feeds/entry/", {"action": "remove", "_selected_action": [entry.pk]})
    entry.refresh_from_db()
    assert entry.removed_at is not None
    assert store(feed, document(item("a"))) == (0, 0)


def test_addfeed_prints_each_new_id_and_refuses_bad_urls(capsys, allow_private):
    call_command("addfeed", "http://127.0.0.1:9/a.xml", "http://127.0.0.1:9/b.xml", "--interval", "30")
    out = capsys.readouterr().out.splitlines()
    feeds = list(Feed.objects.order_by("id"))
    assert out == [f"{feeds[0].pk} http://127.0.0.1:9/a.xml", f"{feeds[1].pk} http://127.0.0.1:9/b.xml"]
    assert feeds[0].interval == 30
    with pytest.raises(CommandError):
        call_command("addfeed", "ftp://example.com/feed.xml")
    assert Feed.objects.count() == 2


def test_fetchfeeds_prints_one_line_per_feed(capsys, allow_private, feed_server):
    good = Feed.objects.create(url=feed_server.route("/good.xml", rss(("1", "One"), ("2", "Two"))))
    bad = Feed.objects.create(url=feed_server.route("/bad.xml", status=500))
    call_command("fetchfeeds")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{good.pk} {good.url}: 2 new, 0 updated"
    assert lines[1].startswith(f"{bad.pk} {bad.url}: error: HTTP 500")
    call_command("fetchfeeds", "--feed", str(good.pk))
    assert capsys.readouterr().out.strip() == f"{good.pk} {good.url}: not modified"
    bad.refresh_from_db()
    assert bad.error_count == 1
    assert bad.last_error.startswith("HTTP 500")
