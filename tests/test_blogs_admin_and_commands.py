"""Live blogs: the model's change numbers, the admin and the addblog / endblog commands."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from blogs.models import Blog, BlogChange, BlogSource, add_source, end_blog, remove_source, update_due_blogs
from feeds.models import Feed
from feeds.store import store
from tests.factories import document, item

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("static_files")]


def feed_with(name, count=0):
    feed = Feed.objects.create(url=f"https://example.com/{name}.xml", title=name)
    if count:
        store(feed, document(*(item(f"{name}-{n}") for n in range(count))))
    return feed


def addblog(*args):
    out, err = StringIO(), StringIO()
    call_command("addblog", *args, stdout=out, stderr=err)
    return out.getvalue().strip(), err.getvalue()


def test_addblog_prints_the_id_and_adds_sources_held_or_not():
    wire, agency, noisy = feed_with("wire"), feed_with("agency"), feed_with("noisy")
    out, _ = addblog(
        "election",
        "Election night",
        "--feed",
        str(wire.pk),
        "--feed",
        str(agency.pk),
        "--hold",
        str(noisy.pk),
    )
    blog = Blog.objects.get(slug="election")
    assert out == str(blog.pk)
    assert blog.state == Blog.State.LIVE
    assert blog.title == "Election night"
    sources = {s.feed_id: s.hold for s in blog.blog_sources.all()}
    assert sources == {wire.pk: False, agency.pk: False, noisy.pk: True}


def test_addblog_on_an_existing_slug_adds_sources_and_prints_the_same_id():
    wire, agency = feed_with("wire"), feed_with("agency")
    first, _ = addblog("match", "The match", "--feed", str(wire.pk))
    again, err = addblog("match", "Another title", "--feed", str(agency.pk), "--feed", str(wire.pk))
    assert again == first
    assert "already exists" in err
    blog = Blog.objects.get(slug="match")
    assert blog.title == "The match"
    assert set(blog.sources.values_list("pk", flat=True)) == {wire.pk, agency.pk}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bad slug", "T"], "slug"),
        (["ok", "T", "--feed", "999999"], "no feed with id 999999"),
        (["ok", "T", "--image", "http://example.com/a.png"], "https"),
        (["ok", "T", "--starts", "tomorrow"], "not a date"),
    ],
)
def test_addblog_refuses_bad_input_clearly_and_creates_nothing(args, message):
    with pytest.raises(CommandError, match=message):
        addblog(*args)
    assert not Blog.objects.exists()


def test_addblog_with_a_future_start_is_scheduled_until_then():
    start = timezone.now() + timedelta(hours=1)
    addblog(
        "storm", "Storm", "--starts", start.isoformat(), "--ends", (start + timedelta(hours=2)).isoformat()
    )
    blog = Blog.objects.get(slug="storm")
    assert blog.state == Blog.State.SCHEDULED
    assert update_due_blogs(now=start - timedelta(minutes=1)) == (0, 0)
    assert update_due_blogs(now=start + timedelta(minutes=1)) == (1, 0)
    blog.refresh_from_db()
    assert blog.state == Blog.State.LIVE
    assert BlogChange.objects.filter(blog=blog, kind="blog.updated").count() == 1


def test_a_blog_ends_by_itself_at_its_end_time():
    blog = Blog.objects.create(slug="b", title="B", ends_at=timezone.now() - timedelta(seconds=1))
    assert update_due_blogs() == (0, 1)
    blog.refresh_from_db()
    assert blog.ended
    assert blog.ended_seq is not None
    assert update_due_blogs() == (0, 0)


def test_endblog_ends_once_with_a_change_number():
    blog = Blog.objects.create(slug="b", title="B")
    out = StringIO()
    call_command("endblog", "b", stdout=out)
    assert "ended" in out.getvalue()
    blog.refresh_from_db()
    assert blog.ended
    assert blog.ends_at <= timezone.now()
    change = BlogChange.objects.get(blog=blog)
    assert change.kind == "blog.ended"
    assert change.seq == blog.ended_seq == blog.seq
    out = StringIO()
    call_command("endblog", "b", stdout=out)
    assert "already" in out.getvalue()
    assert BlogChange.objects.filter(blog=blog).count() == 1
    with pytest.raises(CommandError, match="no blog"):
        call_command("endblog", "nope")


def test_adding_a_source_brings_its_newest_entries_in_after_the_addition():
    feed = feed_with("wire", count=3)
    blog = Blog.objects.create(slug="b", title="B")
    source, created = add_source(blog, feed)
    assert created
    changes = list(BlogChange.objects.filter(blog=blog).order_by("seq"))
    assert [c.kind for c in changes] == ["source.added"] + ["entry.created"] * 3
    assert changes[0].seq == source.added_seq
    # Oldest first, each with a number of its own after the addition's, in one block.
    seqs = [c.seq for c in changes]
    assert seqs == list(range(seqs[0], seqs[0] + 4))
    assert [c.entry.created_seq for c in changes[1:]] == sorted(c.entry.created_seq for c in changes[1:])
    assert add_source(blog, feed) == (source, False)
    assert BlogChange.objects.filter(blog=blog).count() == 4


def test_removing_a_source_is_a_change_of_that_blog_only():
    feed = feed_with("wire", count=1)
    one, two = Blog.objects.create(slug="one", title="1"), Blog.objects.create(slug="two", title="2")
    add_source(one, feed)
    add_source(two, feed)
    assert remove_source(one, feed)
    assert not remove_source(one, feed)
    removal = BlogChange.objects.get(kind="source.removed")
    assert removal.blog == one
    assert removal.feed_id == feed.pk
    assert removal.seq > BlogChange.objects.filter(blog=two).order_by("-seq").first().seq
    assert list(BlogSource.objects.values_list("blog__slug", flat=True)) == ["two"]


def test_a_title_change_is_a_change_but_an_unchanged_save_is_not():
    blog = Blog.objects.create(slug="b", title="B")
    blog.save()
    assert not BlogChange.objects.exists()
    blog = Blog.objects.get(pk=blog.pk)
    blog.title = "Better"
    blog.save()
    assert BlogChange.objects.get().kind == "blog.updated"


def test_staff_create_a_blog_with_sources_in_the_admin_and_end_it(admin_client):
    wire, agency = feed_with("wire", count=2), feed_with("agency")
    response = admin_client.post(
        "/admin/blogs/blog/add/",
        {
            "title": "Election night",
            "slug": "election",
            "description": "Results as they come",
            "image_url": "",
            "state": "live",
            "blog_sources-TOTAL_FORMS": "2",
            "blog_sources-INITIAL_FORMS": "0",
            "blog_sources-0-feed": str(wire.pk),
            "blog_sources-1-feed": str(agency.pk),
            "blog_sources-1-hold": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    blog = Blog.objects.get(slug="election")
    assert {s.feed_id: s.hold for s in blog.blog_sources.all()} == {wire.pk: False, agency.pk: True}
    assert BlogChange.objects.filter(blog=blog, kind="entry.created").count() == 2
    assert admin_client.get("/admin/blogs/blog/").status_code == 200
    assert admin_client.get(f"/admin/blogs/blog/{blog.pk}/change/").status_code == 200
    admin_client.post("/admin/blogs/blog/", {"action": "end_blogs", "_selected_action": [blog.pk]})
    blog.refresh_from_db()
    assert blog.ended
    assert end_blog(blog) is False


def test_removing_a_source_in_the_admin_records_the_removal(admin_client):
    wire = feed_with("wire")
    blog = Blog.objects.create(slug="b", title="B")
    source, _ = add_source(blog, wire)
    response = admin_client.post(
        f"/admin/blogs/blog/{blog.pk}/change/",
        {
            "title": "B",
            "slug": "b",
            "description": "",
            "image_url": "",
            "state": "live",
            "blog_sources-TOTAL_FORMS": "1",
            "blog_sources-INITIAL_FORMS": "1",
            "blog_sources-0-id": str(source.pk),
            "blog_sources-0-blog": str(blog.pk),
            "blog_sources-0-feed": str(wire.pk),
            "blog_sources-0-DELETE": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    assert not BlogSource.objects.exists()
    assert BlogChange.objects.filter(blog=blog, kind="source.removed", feed_id=wire.pk).exists()
