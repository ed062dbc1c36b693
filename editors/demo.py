"""`make run`'s demo live blog: two demo sources served by the app itself, a pinned summary, key
events, and an editor's posts arriving among the entries. Only with LIVELOG_DEMO."""

import re

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from blogs.models import Blog, add_source
from editors import actions
from feeds.models import Entry, Feed

SLUG = "demo"
DEMO_FEEDS = (("/demo/feed.xml", "Livelog demo"), ("/demo/agency.xml", "Livelog demo agency"))
# Any host: a demo feed registered by an earlier `make run` on another port is the same feed.
LOOPBACK = r"^https?://(127\.0\.0\.1|localhost|\[::1\])(:[0-9]+)?"

SUMMARY = (
    "What we know so far",
    "This is a demo live blog. Entries from **two demo sources** arrive every few seconds, and the "
    "demo desk posts an update now and then.\n\n"
    "- Become an editor: `make superuser`, then sign in at `/admin/`.\n"
    "- Back on this page you get a compose box (publish with Ctrl+Enter) and, on every item, "
    "pin, key event, edit and delete.",
)
UPDATES = [
    ("Road closures", "The ring road is closed between exits **4 and 6**; diversions are signposted."),
    ("", "We are checking the latest figures with the agency and will update this post."),
    (
        "Shelters open",
        "Three shelters are open tonight:\n\n1. the town hall\n2. the north school\n3. the stadium",
    ),
    ("", "A reader sends this: *the water has reached the second step of the old bridge*."),
    ("Power", "About 1,200 homes are without power, the operator says. Repairs start at first light."),
]


def demo_feeds(base: str) -> list[Feed]:
    """The demo sources at `base` (this run's host and port), moving those an earlier run registered."""
    feeds = []
    for path, title in DEMO_FEEDS:
        url = base + path
        same = list(Feed.objects.filter(url__regex=LOOPBACK + re.escape(path) + "$").order_by("pk"))
        feed = next((f for f in same if f.url == url), same[0] if same else None)
        for other in same:
            if other is not feed:
                other.delete()  # a leftover of an earlier run on another port (it could never answer)
        if feed is None:
            feed = Feed.objects.create(url=url, title=title, interval=5)
        elif feed.url != url or feed.error_count:
            Feed.objects.filter(pk=feed.pk).update(
                url=url, error_count=0, last_error="", etag="", last_modified="", body_hash="",
                next_fetch_at=timezone.now(), next_fetch_reason=Feed.Why.INTERVAL, lease_until=None,
            )  # fmt: skip
        feeds.append(feed)
    return feeds


def desk():
    user, created = get_user_model().objects.get_or_create(
        username="demo-desk", defaults={"first_name": "Demo", "last_name": "desk"}
    )
    if created:
        user.set_unusable_password()  # an author's name, not a login
        user.save()
    return user


def setup(base: str) -> Blog:
    """Create (once) or refresh the demo blog; returns it."""
    with transaction.atomic():
        feeds = demo_feeds(base)
        blog, created = Blog.objects.get_or_create(
            slug=SLUG,
            defaults={
                "title": "Livelog demo: a live blog",
                "description": "Two demo sources and an editor's posts, live. Nothing here is real.",
            },
        )
        for feed in feeds:
            add_source(blog, feed)
    if created:
        user = desk()
        summary = actions.create_post(blog, user, title=SUMMARY[0], body=SUMMARY[1], via="demo")
        actions.mark(blog, summary.pk, user, "pin", via="demo")
        for title, body in UPDATES[:2]:
            post = actions.create_post(blog, user, title=title, body=body, via="demo")
            if title:
                actions.mark(blog, post.pk, user, "key-event", via="demo")
    return blog


def post_update() -> bool:
    """The demo desk's next post (every third one a key event); False without a live demo blog."""
    blog = Blog.objects.filter(slug=SLUG, state=Blog.State.LIVE).first()
    if blog is None:
        return False
    user = desk()
    count = Entry.objects.filter(blog=blog, feed__isnull=True).count()
    title, body = UPDATES[count % len(UPDATES)]
    post = actions.create_post(blog, user, title=title, body=body, via="demo")
    if title and count % 3 == 0:
        actions.mark(blog, post.pk, user, "key-event", via="demo")
    return True
