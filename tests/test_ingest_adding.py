"""Adding a feed: the fetch guard, and a web page's URL standing for the feed it advertises."""

import pytest
from django.core.management import CommandError, call_command

from feeds.models import Feed
from feeds.subscribe import add_feed
from tests.feedserver import rss

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("static_files")]

PAGE = """<!DOCTYPE html><html><head><title>A blog</title>
<link rel="alternate" type="application/atom+xml" href="/blog/atom.xml">
<link rel="alternate" type="application/rss+xml" href="/blog/rss.xml">
</head><body><p>Posts</p></body></html>"""


@pytest.fixture
def site(feed_server, allow_private):
    feed_server.route("/blog/", PAGE, headers={"Content-Type": "text/html; charset=utf-8"})
    feed_server.route("/blog/atom.xml", rss(("1", "One")))
    feed_server.route("/plain/", "<html><body>No feeds here</body></html>")
    feed_server.route("/feed.xml", rss(("1", "One")))
    return feed_server


def test_addfeed_discovers_the_feed_of_a_web_page_and_says_so(site, capsys):
    call_command("addfeed", site.url("/blog/"))

    feed = Feed.objects.get()
    assert feed.url == site.url("/blog/atom.xml")  # the first feed the page advertises
    out = capsys.readouterr().out.strip()
    assert out == f"{feed.pk} {feed.url} (discovered on the web page {site.url('/blog/')})"


def test_addfeed_takes_a_feed_url_as_it_is(site, capsys):
    call_command("addfeed", site.url("/feed.xml"))

    feed = Feed.objects.get()
    assert feed.url == site.url("/feed.xml")
    assert capsys.readouterr().out.strip() == f"{feed.pk} {feed.url}"


def test_addfeed_refuses_a_web_page_without_a_feed(site, capsys):
    with pytest.raises(CommandError, match="1 URL"):
        call_command("addfeed", site.url("/plain/"))

    assert Feed.objects.count() == 0
    assert "refused: not a feed: this is an HTML page; it links to no feed" in capsys.readouterr().err


def test_a_url_that_cannot_be_fetched_now_is_added_as_given(site):
    feed, created, page = add_feed(site.url("/missing.xml"))  # 404 today; the feed will show its error

    assert (feed.url, created, page) == (site.url("/missing.xml"), True, "")


def test_adding_a_page_whose_feed_is_already_followed_says_so(site, capsys):
    Feed.objects.create(url=site.url("/blog/atom.xml"))

    call_command("addfeed", site.url("/blog/"))

    assert Feed.objects.count() == 1
    assert capsys.readouterr().out.strip().endswith("(already added)")


def test_the_admin_add_form_discovers_the_feed_of_a_web_page(site, admin_client):
    response = admin_client.post(
        "/admin/feeds/feed/add/", {"url": site.url("/blog/"), "interval": 30, "enabled": "on"}, follow=True
    )

    assert response.status_code == 200
    feed = Feed.objects.get()
    assert (feed.url, feed.interval) == (site.url("/blog/atom.xml"), 30)
    assert "is a web page: following the feed it links to" in response.content.decode()


def test_the_admin_refuses_a_web_page_without_a_feed(site, admin_client):
    response = admin_client.post("/admin/feeds/feed/add/", {"url": site.url("/plain/"), "interval": 5})

    assert response.status_code == 200
    assert Feed.objects.count() == 0
    assert "it links to no feed either" in response.content.decode()


def test_the_admin_edit_form_runs_the_guard_too(admin_client, settings):
    feed = Feed.objects.create(url="https://example.com/feed.xml")
    settings.FEEDS_ALLOW_PRIVATE_NETWORKS = False

    response = admin_client.post(
        f"/admin/feeds/feed/{feed.pk}/change/", {"url": "http://10.0.0.1/feed.xml", "interval": 5}
    )

    assert response.status_code == 200
    assert "10.0.0.1 is not a public address" in response.content.decode()
    feed.refresh_from_db()
    assert feed.url == "https://example.com/feed.xml"
