"""`make run`'s demo live blog (editors/demo.py): its sources follow the port, it is made once."""

import pytest

from blogs.models import Blog
from editors import demo
from feeds.models import Entry, Feed

pytestmark = pytest.mark.django_db


def test_the_demo_blog_has_two_sources_a_pinned_summary_and_key_events():
    blog = demo.setup("http://127.0.0.1:8000")
    assert blog.slug == "demo"
    assert sorted(blog.sources.values_list("url", flat=True)) == [
        "http://127.0.0.1:8000/demo/agency.xml",
        "http://127.0.0.1:8000/demo/feed.xml",
    ]
    posts = Entry.objects.filter(blog=blog)
    assert [p.title for p in posts.filter(pinned_at__isnull=False)] == ["What we know so far"]
    assert posts.filter(key_event=True).count() == 1
    assert all(p.author == "Demo desk" and p.seq for p in posts)


def test_the_demo_sources_follow_the_port_and_leave_no_dead_feed():
    demo.setup("http://127.0.0.1:8000")
    first = set(Feed.objects.values_list("pk", flat=True))
    Feed.objects.update(error_count=3, last_error="connection refused")
    demo.setup("http://127.0.0.1:8766")
    assert sorted(Feed.objects.values_list("url", flat=True)) == [
        "http://127.0.0.1:8766/demo/agency.xml",
        "http://127.0.0.1:8766/demo/feed.xml",
    ]
    assert set(Feed.objects.values_list("pk", flat=True)) == first  # the same feeds, moved
    assert set(Feed.objects.values_list("error_count", flat=True)) == {0}
    assert Entry.objects.filter(blog__slug="demo").count() == 3  # made once


def test_a_feed_left_by_an_older_run_on_another_port_is_dropped():
    Feed.objects.create(url="http://127.0.0.1:8000/demo/feed.xml", title="Livelog demo")
    Feed.objects.create(url="http://127.0.0.1:8766/demo/feed.xml", title="Livelog demo")
    Feed.objects.create(url="https://example.com/demo/feed.xml", title="Someone else's")
    demo.setup("http://127.0.0.1:9000")
    assert sorted(Feed.objects.values_list("url", flat=True)) == [
        "http://127.0.0.1:9000/demo/agency.xml",
        "http://127.0.0.1:9000/demo/feed.xml",
        "https://example.com/demo/feed.xml",
    ]


def test_the_demo_desk_posts_among_the_entries(settings):
    blog = demo.setup("http://127.0.0.1:8000")
    assert demo.post_update()
    newest = Entry.objects.filter(blog=blog).order_by("-created_seq").first()
    assert newest.author == "Demo desk"
    Blog.objects.filter(pk=blog.pk).update(state=Blog.State.ENDED)
    assert not demo.post_update()


def test_the_demo_feeds_are_served_only_in_the_demo(client, settings):
    settings.LIVELOG_DEMO = True
    assert b"Agency flash" in client.get("/demo/agency.xml").content
    assert b"Demo entry" in client.get("/demo/feed.xml").content
    settings.LIVELOG_DEMO = False
    assert client.get("/demo/agency.xml").status_code == 404
