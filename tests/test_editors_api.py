"""The write API (/api/blogs/<slug>/…): every action with a valid token, a revoked one (401), a
user without the permission (403) and bad input (400 with a clear message)."""

import pytest
from django.contrib.auth.models import Group, User

from blogs.models import Blog, add_source
from editors.models import ApiToken, AuditLog
from feeds.models import Entry, Feed
from feeds.store import store
from live.replay import changes_after
from tests.factories import document, item

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("static_files")]


@pytest.fixture
def blog():
    return Blog.objects.create(slug="storm", title="The storm")


@pytest.fixture
def wire(blog):
    feed = Feed.objects.create(url="https://example.com/wire.xml", title="Wire")
    add_source(blog, feed)
    return feed


@pytest.fixture
def agency(blog):
    feed = Feed.objects.create(url="https://example.com/agency.xml", title="Agency")
    add_source(blog, feed, hold=True)
    return feed


def token_for(username, editor=True):
    user = User.objects.create_user(username, first_name=username.title())
    if editor:
        user.groups.add(Group.objects.get(name="Editors"))
    return ApiToken.issue(user)


@pytest.fixture
def api(client):
    _, token = token_for("ed")

    def call(method, path, data=None, token=token):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        kwargs = {"content_type": "application/json"} if data is not None else {}
        if data is not None:
            kwargs["data"] = data
        return getattr(client, method)(path, headers=headers, **kwargs)

    return call


def post(api, body="A **post**.", title="Update", slug="storm"):
    return api("post", f"/api/blogs/{slug}/posts/", {"title": title, "body": body})


def test_a_post_is_201_in_the_streams_entry_shape_and_in_the_blogs_change_log(api, blog):
    response = post(api, body="Water is *rising*.\n\n![Map](https://example.com/map.png)")
    assert response.status_code == 201
    message = response.json()
    assert message["type"] == "entry.created"
    entry = message["entry"]
    assert entry["kind"] == "post"
    assert entry["feed"] is None
    assert entry["title"] == "Update"
    assert entry["author"] == "Ed"
    assert "<em>rising</em>" in entry["summary_html"]
    assert '<img src="https://example.com/map.png" alt="Map"' in entry["summary_html"]
    assert entry["pinned"] is False
    assert entry["key_event"] is False
    assert entry["corrected"] is False
    post_row = Entry.objects.get(pk=entry["id"])
    assert post_row.blog == blog
    assert message["cursor"] == str(post_row.seq)
    assert Entry.objects.get(seq=int(message["cursor"])) == post_row  # its own number in the change log
    assert changes_after(0) == []  # a post is its blog's, not the river's
    line = AuditLog.objects.get()
    assert (line.username, line.action, line.via, line.blog) == ("ed", "post.created", "api", "storm")


def test_a_post_with_script_payloads_renders_none_of_them(api, blog):
    response = post(
        api, body="<script>alert(1)</script> [x](javascript:alert(1)) <img src=x onerror=alert(1)>"
    )
    html = response.json()["entry"]["summary_html"]
    assert "<script" not in html
    assert "<img" not in html
    assert "javascript:" not in html.split("</p>")[0].replace("[x](javascript:alert(1))", "")
    assert 'href="javascript' not in html


def test_edit_and_delete_a_post(api, blog):
    pk = post(api).json()["entry"]["id"]
    edited = api("patch", f"/api/blogs/storm/posts/{pk}/", {"body": "Now *fixed*."})
    assert edited.status_code == 200
    assert edited.json()["type"] == "entry.updated"
    assert edited.json()["entry"]["corrected"] is True
    assert "<em>fixed</em>" in edited.json()["entry"]["summary_html"]
    assert edited.json()["entry"]["title"] == "Update"  # untouched
    deleted = api("delete", f"/api/blogs/storm/posts/{pk}/")
    assert deleted.status_code == 204
    assert Entry.objects.get(pk=pk).removed_at is not None
    assert api("delete", f"/api/blogs/storm/posts/{pk}/").status_code == 404
    assert [a.action for a in AuditLog.objects.order_by("id")] == [
        "post.created",
        "post.edited",
        "post.deleted",
    ]


def test_pins_and_key_events_on_posts_and_feed_entries_each_take_a_number(api, blog, wire):
    store(wire, document(item("flood")))
    feed_entry = Entry.objects.get(guid="flood")
    pk = post(api).json()["entry"]["id"]
    before = Entry.objects.get(pk=feed_entry.pk).seq
    pinned = api("post", f"/api/blogs/storm/entries/{feed_entry.pk}/pin")
    assert pinned.status_code == 200
    assert pinned.json()["type"] == "entry.updated"
    assert pinned.json()["entry"]["pinned"] is True
    assert pinned.json()["entry"]["corrected"] is False  # a pin is not a correction
    assert int(pinned.json()["cursor"]) > before
    marked = api("post", f"/api/blogs/storm/entries/{pk}/key-event")
    assert marked.json()["entry"]["key_event"] is True
    assert api("post", f"/api/blogs/storm/entries/{pk}/unkey-event").json()["entry"]["key_event"] is False
    assert api("post", f"/api/blogs/storm/entries/{feed_entry.pk}/unpin").json()["entry"]["pinned"] is False
    assert AuditLog.objects.filter(action__in=["pin", "unpin", "key-event", "unkey-event"]).count() == 4


def test_at_most_three_pins(api, blog):
    ids = [post(api, title=f"p{n}").json()["entry"]["id"] for n in range(4)]
    for pk in ids[:3]:
        assert api("post", f"/api/blogs/storm/entries/{pk}/pin").status_code == 200
    refused = api("post", f"/api/blogs/storm/entries/{ids[3]}/pin")
    assert refused.status_code == 400
    assert refused.json()["error"] == "at most 3 entries can be pinned: unpin one first"
    assert (
        api("post", f"/api/blogs/storm/entries/{ids[0]}/pin").status_code == 200
    )  # already pinned: moves up


def test_a_held_sources_entries_wait_in_the_queue_until_approved(api, blog, wire, agency):
    store(agency, document(item("rumour"), item("fact")))
    store(wire, document(item("wire news")))
    held = Entry.objects.filter(feed=agency)
    assert {e.review for e in held} == {"held"}
    assert {e.seq for e in held} == {None}  # no change number: no stream, list or page has them
    assert [e.guid for e in changes_after(0)] == ["wire news"]
    queue = api("get", "/api/blogs/storm/queue/").json()
    assert queue["count"] == 2
    assert {i["title"] for i in queue["items"]} == {"Title rumour", "Title fact"}
    fact, rumour = Entry.objects.get(guid="fact"), Entry.objects.get(guid="rumour")

    approved = api("post", f"/api/blogs/storm/queue/{fact.pk}/approve")
    assert approved.status_code == 200
    assert approved.json()["type"] == "entry.created"
    assert int(approved.json()["cursor"]) > Entry.objects.get(guid="wire news").seq
    rejected = api("post", f"/api/blogs/storm/queue/{rumour.pk}/reject")
    assert rejected.json() == {"id": rumour.pk, "review": "rejected"}
    assert api("get", "/api/blogs/storm/queue/").json()["count"] == 0

    # Another fetch brings neither back: the rejected one stays out, the approved one is not held again.
    store(agency, document(item("rumour", summary="<p>changed</p>"), item("fact")))
    assert Entry.objects.get(guid="rumour").seq is None
    assert [e.guid for e in changes_after(0)] == ["wire news", "fact"]
    assert api("post", f"/api/blogs/storm/queue/{rumour.pk}/approve").status_code == 404


def test_held_and_rejected_entries_have_no_permalink_and_are_in_no_api_answer(client, api, blog, agency):
    store(agency, document(item("rumour")))
    rumour = Entry.objects.get(guid="rumour")
    assert client.get(f"/entries/{rumour.pk}/").status_code == 404
    assert client.get("/api/entries/").json()["items"] == []
    assert client.get("/api/entries/?after=0").json()["items"] == []
    assert "rumour" not in client.get("/").content.decode()


@pytest.mark.parametrize(
    ("method", "path", "permission"),
    [
        ("post", "/api/blogs/storm/posts/", "editors.post"),
        ("patch", "/api/blogs/storm/posts/{post}/", "editors.post"),
        ("delete", "/api/blogs/storm/posts/{post}/", "editors.post"),
        ("post", "/api/blogs/storm/entries/{post}/pin", "editors.mark"),
        ("post", "/api/blogs/storm/entries/{post}/unpin", "editors.mark"),
        ("post", "/api/blogs/storm/entries/{post}/key-event", "editors.mark"),
        ("post", "/api/blogs/storm/entries/{post}/unkey-event", "editors.mark"),
        ("get", "/api/blogs/storm/queue/", "editors.moderate"),
        ("post", "/api/blogs/storm/queue/{held}/approve", "editors.moderate"),
        ("post", "/api/blogs/storm/queue/{held}/reject", "editors.moderate"),
    ],
)
def test_every_action_needs_a_valid_token_and_the_permission(api, blog, agency, method, path, permission):
    store(agency, document(item("rumour")))
    path = path.format(post=post(api).json()["entry"]["id"], held=Entry.objects.get(guid="rumour").pk)
    data = {"body": "x"} if method in ("post", "patch") and "posts" in path else None
    count = AuditLog.objects.count()

    assert api(method, path, data, token=None).status_code == 401
    row, revoked = token_for("gone")
    row.delete()
    answer = api(method, path, data, token=revoked)
    assert answer.status_code == 401
    assert answer.json() == {"error": "invalid or revoked token"}
    _, reader = token_for("reader", editor=False)
    forbidden = api(method, path, data, token=reader)
    assert forbidden.status_code == 403
    assert forbidden.json()["missing"] == [permission]
    assert AuditLog.objects.count() == count  # nothing was done

    assert api(method, path, data).status_code in (200, 201, 204)


@pytest.mark.parametrize(
    ("method", "path", "data", "status", "message"),
    [
        ("post", "/api/blogs/storm/posts/", {"title": "no body"}, 400, "body is required (Markdown)"),
        ("post", "/api/blogs/storm/posts/", {"body": "   "}, 400, "body must not be empty"),
        ("post", "/api/blogs/storm/posts/", {"body": 5}, 400, "body must be a string (Markdown)"),
        ("post", "/api/blogs/storm/posts/", {"body": "x", "pinned": True}, 400, "unknown field(s): pinned"),
        ("post", "/api/blogs/storm/posts/", ["x"], 400, "the request body must be a JSON object"),
        ("post", "/api/blogs/storm/posts/", {"body": "x" * 20_001}, 400, "at most 20000 characters"),
        ("post", "/api/blogs/nope/posts/", {"body": "x"}, 404, "no blog 'nope'"),
        ("patch", "/api/blogs/storm/posts/{post}/", {}, 400, "nothing to change"),
        ("patch", "/api/blogs/storm/posts/999999/", {"body": "x"}, 404, "no post 999999"),
        ("post", "/api/blogs/storm/entries/999999/pin", None, 404, "no entry 999999"),
        ("post", "/api/blogs/storm/entries/{other}/pin", None, 404, "in the blog 'storm'"),
        ("post", "/api/blogs/storm/queue/{post}/approve", None, 404, "no held entry"),
    ],
)
def test_bad_input_gets_a_clear_error_and_changes_nothing(api, blog, method, path, data, status, message):
    other = Blog.objects.create(slug="match", title="The match")
    path = path.format(
        post=post(api).json()["entry"]["id"], other=post(api, slug=other.slug).json()["entry"]["id"]
    )
    count = AuditLog.objects.count()
    answer = api(method, path, data)
    assert answer.status_code == status
    assert message in answer.json()["error"]
    assert AuditLog.objects.count() == count


def test_malformed_json_is_a_400(client, api, blog):
    _, token = token_for("ed2")
    answer = client.post(
        "/api/blogs/storm/posts/",
        "{nope",
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 400
    assert "must be JSON" in answer.json()["error"]


def test_an_ended_blog_takes_no_more_posts(api, blog):
    from blogs.models import end_blog

    end_blog(blog)
    answer = post(api)
    assert answer.status_code == 409
    assert answer.json()["error"] == "the blog 'storm' has ended; it can no longer change"


def test_a_post_reads_back_with_its_markdown_and_previews_store_nothing(api, blog):
    pk = post(api, body="Some *words*.").json()["entry"]["id"]
    shown = api("get", f"/api/blogs/storm/posts/{pk}/")
    assert shown.json()["body"] == "Some *words*."
    assert shown.json()["entry"]["id"] == pk
    count = Entry.objects.count()
    previewed = api("post", "/api/blogs/storm/preview", {"body": "A <script>x</script> **b**"})
    assert previewed.json() == {
        "summary_html": "<p>A &lt;script&gt;x&lt;/script&gt; <strong>b</strong></p>\n"
    }
    assert Entry.objects.count() == count


def test_the_entry_admin_lists_posts_and_held_entries(admin_client, api, blog, agency):
    pk = post(api, title="An editor's post").json()["entry"]["id"]
    store(agency, document(item("rumour")))
    listing = admin_client.get("/admin/feeds/entry/")
    assert listing.status_code == 200
    assert "An editor&#x27;s post" in listing.content.decode()
    assert admin_client.get(f"/admin/feeds/entry/{pk}/change/").status_code == 200


def test_a_posts_permalink_is_in_its_blog(client, api, blog):
    pk = post(api, title="Here").json()["entry"]["id"]
    response = client.get(f"/entries/{pk}/")
    assert response.status_code == 302
    assert response["Location"] == f"/blogs/storm/entries/{pk}/"
    page = client.get(f"/blogs/storm/entries/{pk}/").content.decode()
    assert "Here" in page
    assert "More from" not in page
