"""The read-only JSON API and the server-rendered pages."""

import pytest
from django.utils import timezone

from feeds.models import Entry, Feed
from feeds.store import store
from tests.factories import document, item

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("static_files")]


@pytest.fixture
def feed():
    return Feed.objects.create(url="https://example.com/feed.xml", title="Wire")


def test_entries_are_newest_first_without_a_cursor_and_page_with_next(client, feed):
    store(feed, document(*[item(f"e{n}") for n in range(5, 0, -1)]))  # e5 is newest
    first = client.get("/api/entries/?limit=3").json()
    assert [i["entry"]["title"] for i in first["items"]] == ["Title e5", "Title e4", "Title e3"]
    second = client.get(first["next"]).json()
    assert [i["entry"]["title"] for i in second["items"]] == ["Title e2", "Title e1"]
    assert second["next"] is None


def test_entries_after_a_cursor_are_oldest_first_and_carry_cursors(client, feed):
    store(feed, document(item("a")))
    cursor = client.get("/api/entries/").json()["items"][0]["cursor"]
    store(feed, document(item("c"), item("b")))
    items = client.get(f"/api/entries/?after={cursor}").json()["items"]
    assert [i["entry"]["title"] for i in items] == ["Title b", "Title c"]
    assert int(items[0]["cursor"]) < int(items[1]["cursor"])
    assert client.get(f"/api/entries/?after={items[1]['cursor']}").json()["items"] == []


def test_entries_filter_by_feed(client, feed):
    other = Feed.objects.create(url="https://example.com/other.xml")
    store(feed, document(item("mine")))
    store(other, document(item("theirs")))
    items = client.get(f"/api/entries/?feed={feed.pk}").json()["items"]
    assert [i["entry"]["title"] for i in items] == ["Title mine"]


@pytest.mark.parametrize("query", ["after=x", "after=-1", "limit=0", "feed=abc", "before=1.5"])
def test_bad_parameters_get_a_clear_400(client, query):
    response = client.get(f"/api/entries/?{query}")
    assert response.status_code == 400
    assert "error" in response.json()


def test_feeds_list_their_state_and_entry_count(client, feed):
    store(feed, document(item("a"), item("b")))
    [data] = client.get("/api/feeds/").json()["items"]
    assert data["entry_count"] == 2
    for key in (
        "id",
        "url",
        "title",
        "enabled",
        "interval",
        "last_fetched_at",
        "next_fetch_at",
        "error_count",
        "last_error",
    ):
        assert key in data


def test_the_page_renders_the_newest_entries_without_scripts(client, feed):
    store(feed, document(item("a", title="<script>alert(1)</script>"), item("b")))
    response = client.get("/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert" not in html
    assert html.index("Title b") > html.index("alert(1)")  # newest (first in the document) on top
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert f'data-cursor="{Entry.objects.order_by("-seq").first().seq}"' in html


def test_removed_entries_leave_the_page_and_the_api(client, feed):
    store(feed, document(item("gone", title="Gone soon")))
    entry = Entry.objects.get()
    entry.removed_at = timezone.now()
    entry.save()
    assert "Gone soon" not in client.get("/").content.decode()
    assert client.get("/api/entries/").json()["items"] == []
    assert client.get(f"/entries/{entry.pk}/").status_code == 404


def test_an_entry_has_its_own_page(client, feed):
    store(feed, document(item("a", title="Shareable")))
    entry = Entry.objects.get()
    html = client.get(f"/entries/{entry.pk}/").content.decode()
    assert "Shareable" in html
    assert "https://example.com/a" in html
