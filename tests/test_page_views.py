"""The reader pages as the server renders them: first paint, history without script, permalinks,
the policy that keeps feed text inert, and the size budget of the page's own script and styles."""

import gzip
import re
from pathlib import Path

import pytest
from django.utils import timezone

from feeds.models import Entry, Feed
from feeds.store import store
from live.middleware import POLICY
from tests.factories import document, item

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("static_files")]
STATIC = Path(__file__).resolve().parent.parent / "live" / "static" / "live"


@pytest.fixture
def feed():
    return Feed.objects.create(url="https://example.com/feed.xml", title="Wire")


def publish(feed, *items):
    store(feed, document(*items, title=feed.title))


def titles(html: str) -> list[str]:
    return re.findall(r'<h2 class="title" id="title-\d+">(?:<a [^>]*>)?([^<]*)', html)


def test_the_page_paints_the_newest_entries_with_a_filter_and_a_live_status(client, feed):
    publish(feed, item("b"), item("a"))
    html = client.get("/").content.decode()
    assert titles(html) == ["Title b", "Title a"]
    assert 'id="status"' in html
    assert f'<option value="{feed.pk}">Wire</option>' in html
    assert 'href="/entries/' in html


def test_a_filtered_page_shows_one_source_and_names_it(client, feed):
    other = Feed.objects.create(url="https://example.com/other.xml", title="Sports")
    publish(feed, item("mine"))
    publish(other, item("theirs"))
    html = client.get(f"/?feed={other.pk}").content.decode()
    assert titles(html) == ["Title theirs"]
    assert f'<option value="{other.pk}" selected>' in html
    assert f'data-feed="{other.pk}"' in html
    assert "<title>Sports · Livelog</title>" in html


def test_older_entries_are_pages_of_their_own_without_script(client, feed):
    publish(feed, *[item(f"e{n}") for n in range(60, 0, -1)])  # e60 newest
    first = client.get("/").content.decode()
    assert len(titles(first)) == 50
    older = re.search(r'<a id="older" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    second = client.get(older).content.decode()
    assert titles(second) == [f"Title e{n}" for n in range(10, 0, -1)]
    assert "No older entries." in second
    assert 'class="newer"' in second  # the way back to the live top
    assert "data-before=" in second  # the script counts new entries instead of inserting them


def test_a_permalink_has_the_source_link_and_a_removed_entry_is_gone(client, feed):
    publish(feed, item("a"))
    entry = Entry.objects.get()
    html = client.get(f"/entries/{entry.pk}/").content.decode()
    assert 'Read it at the source: <a href="https://example.com/a" rel="noopener noreferrer">' in html
    assert '<meta property="og:title" content="Title a">' in html
    assert "data-single" in html
    entry.removed_at = timezone.now()
    entry.save(update_fields=["removed_at"])
    response = client.get(f"/entries/{entry.pk}/")
    assert response.status_code == 404
    assert "This entry was removed by the editors." in response.content.decode()
    assert "Title a" not in response.content.decode()
    assert client.get("/entries/999999/").status_code == 404


def test_the_api_page_carries_the_cursor_to_follow_the_socket_from(client, feed):
    publish(feed, item("b"), item("a"))
    body = client.get("/api/entries/?limit=1").json()
    assert body["cursor"] == Entry.objects.order_by("-seq").first().cursor
    assert [i["entry"]["title"] for i in body["items"]] == ["Title b"]
    assert "cursor" not in client.get("/api/entries/?after=0").json()  # the change feed is unchanged


def test_html_edited_into_the_database_is_sanitized_again_on_render(client, feed):
    # The admin can edit summary_html by hand; the page must not trust the row.
    publish(feed, item("a"))
    Entry.objects.update(
        summary_html='<p onclick="x()">ok</p><script>alert(1)</script><img src=x onerror=alert(1)>',
        link="javascript:alert(1)",
    )
    entry = Entry.objects.get()
    for path in ("/", f"/entries/{entry.pk}/"):
        html = client.get(path).content.decode()
        assert "<p>ok</p>" in html
        assert "<script>alert" not in html
        assert "onerror" not in html
        assert "onclick" not in html
        assert "javascript:" not in html


def test_every_page_forbids_inline_script_and_html_sinks(client, feed):
    publish(feed, item("a"))
    entry = Entry.objects.get()
    for path in ("/", f"/entries/{entry.pk}/", "/api/entries/"):
        policy = client.get(path).headers["Content-Security-Policy"]
        assert policy == POLICY
    directives = dict(part.strip().split(" ", 1) for part in POLICY.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["base-uri"] == "'none'"
    assert directives["require-trusted-types-for"] == "'script'"
    assert directives["trusted-types"] == "livelog-summary"
    html = client.get("/").content.decode()
    assert re.findall(r"<script\b[^>]*>", html) == [re.search(r'<script src="[^"]+" defer>', html).group(0)]
    assert " style=" not in html
    assert not re.search(r"\son\w+=", html)


def test_the_script_and_styles_stay_small_and_framework_free():
    script = (STATIC / "live.js").read_bytes()
    styles = (STATIC / "live.css").read_bytes()
    assert len(gzip.compress(script, 9)) < 7_200  # 7 KB before posts (issue 13): +0.1 KB
    assert len(gzip.compress(styles, 9)) < 2_000
    for sink in (
        b"innerHTML",
        b"outerHTML",
        b"insertAdjacentHTML",
        b"document.write",
        b"eval(",
        b"Function(",
    ):
        assert sink not in script
    assert script.count(b"parseFromString") == 1  # the one inert parse of the sanitized summary
