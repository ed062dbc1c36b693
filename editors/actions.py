"""Editorial actions: plain functions shared by the write API, the page's editor tools and the admin.

Each one is one transaction: the entry's change (with its change number, so readers resume across
it) and the audit line commit together, and the live push leaves after commit (live/signals.py).
Marks (pins, key events) and approvals belong to the entry: an entry of a feed that several blogs
follow is pinned, marked or approved in all of them.
"""

import uuid

from django.db import transaction
from django.db.models import Q
from django.dispatch import receiver
from django.utils import timezone

from blogs.models import Blog, BlogSource
from editors import markdown
from editors.models import record
from feeds.models import Entry, entry_arriving
from feeds.parsed import MAX_TITLE
from feeds.sanitizing import clean

MAX_PINS = 3
MAX_BODY = 20_000


class EditorialError(Exception):
    """The request cannot be done as asked; the message says why (the API answers 400)."""

    status = 400


class NotFound(EditorialError):
    status = 404


class Conflict(EditorialError):
    status = 409


def display_name(user) -> str:
    return (user.get_full_name() or user.get_username())[:500]


def in_blog(blog: Blog) -> Q:
    """Entries shown in a blog: its posts and its sources' entries."""
    return Q(blog=blog) | Q(feed__blog_sources__blog=blog)


def blog_entry(blog: Blog, entry_id, *, visible: bool = True, lock: bool = False) -> Entry:
    rows = Entry.objects.filter(in_blog(blog), pk=entry_id)
    if visible:
        rows = rows.filter(removed_at__isnull=True, review="")
    if lock:
        rows = Entry.objects.select_for_update(of=("self",)).filter(pk__in=rows.values("pk"))
    entry = rows.select_related("feed").first()
    if entry is None:
        raise NotFound(f"no entry {entry_id} in the blog {blog.slug!r}")
    return entry


def _writable(blog: Blog) -> None:
    if blog.ended:
        raise Conflict(f"the blog {blog.slug!r} has ended; it can no longer change")


def _post_fields(title, body) -> dict:
    fields = {}
    if title is not None:
        if not isinstance(title, str):
            raise EditorialError("title must be a string")
        fields["title"] = clean(title).strip()[:MAX_TITLE]
    if body is not None:
        if not isinstance(body, str):
            raise EditorialError("body must be a string (Markdown)")
        if not body.strip():
            raise EditorialError("body must not be empty")
        if len(body) > MAX_BODY:
            raise EditorialError(f"body must be at most {MAX_BODY} characters")
        fields["body"] = clean(body)
    return fields


def create_post(blog: Blog, user, *, title=None, body=None, via: str) -> Entry:
    """Publish an editor's post in `blog`; it goes to the blog's readers like any entry.

    The body is Markdown (images by URL: `![alt](https://…)`), rendered and sanitized here.
    """
    if body is None:
        raise EditorialError("body is required (Markdown)")
    fields = _post_fields(title or "", body)
    now = timezone.now()
    with transaction.atomic():
        _writable(blog)
        post = Entry(
            blog=blog,
            key=uuid.uuid4().hex,
            title=fields["title"],
            body=fields["body"],
            summary_html=markdown.render(fields["body"]),
            author=display_name(user),
            published=now,
            updated=now,
            first_seen=now,
        )
        post.save()
        record(user, "post.created", post, via, blog.slug)
    return post


def edit_post(blog: Blog, post_id, user, *, title=None, body=None, via: str) -> Entry:
    fields = _post_fields(title, body)
    if not fields:
        raise EditorialError("nothing to change: send title or body")
    with transaction.atomic():
        _writable(blog)
        post = _post(blog, post_id)
        post.title = fields.get("title", post.title)
        post.body = fields.get("body", post.body)
        post.summary_html = markdown.render(post.body)
        post.updated = timezone.now()
        post.save()
        record(user, "post.edited", post, via, blog.slug)
    return post


def delete_post(blog: Blog, post_id, user, *, via: str) -> Entry:
    """Take a post off every open page (entry.deleted); the row stays as a tombstone."""
    with transaction.atomic():
        _writable(blog)
        post = _post(blog, post_id)
        post.removed_at = timezone.now()
        post.pinned_at, post.key_event = None, False
        post.save()
        record(user, "post.deleted", post, via, blog.slug)
    return post


def _post(blog: Blog, post_id) -> Entry:
    post = (
        Entry.objects.select_for_update(of=("self",))
        .filter(blog=blog, feed__isnull=True, pk=post_id, removed_at__isnull=True)
        .first()
    )
    if post is None:
        raise NotFound(f"no post {post_id} in the blog {blog.slug!r}")
    return post


def mark(blog: Blog, entry_id, user, action: str, *, via: str) -> Entry:
    """pin, unpin, key-event or unkey-event: a change of the entry with its own number."""
    with transaction.atomic():
        _writable(blog)
        entry = blog_entry(blog, entry_id, lock=True)
        if action == "pin":
            if entry.pinned_at is None:
                pinned = Entry.objects.filter(in_blog(blog), pinned_at__isnull=False, removed_at__isnull=True)
                if pinned.values("pk").distinct().count() >= MAX_PINS:
                    raise EditorialError(f"at most {MAX_PINS} entries can be pinned: unpin one first")
            entry.pinned_at = timezone.now()  # pinning again moves it to the top of the block
        elif action == "unpin":
            entry.pinned_at = None
        elif action == "key-event":
            entry.key_event = True
        elif action == "unkey-event":
            entry.key_event = False
        else:
            raise NotFound(f"no action {action!r}")
        entry.save(update_fields=["pinned_at", "key_event"], mark_only=True)
        record(user, action, entry, via, blog.slug)
    return entry


def held(blog: Blog):
    """The blog's moderation queue: entries of its sources waiting for approval, oldest first."""
    return (
        Entry.objects.filter(feed__blog_sources__blog=blog, review=Entry.Review.HELD)
        .select_related("feed")
        .order_by("first_seen", "pk")
        .distinct()
    )


def approve(blog: Blog, entry_id, user, *, via: str) -> Entry:
    """Publish a held entry: it reaches readers now, as new, with a new cursor."""
    with transaction.atomic():
        entry = _held(blog, entry_id)
        entry.review = Entry.Review.NONE
        entry.created_seq = None  # new to every reader: its first change is this one
        entry.save()
        record(user, "approved", entry, via, blog.slug)
    return entry


def reject(blog: Blog, entry_id, user, *, via: str) -> Entry:
    """Keep a held entry out for good: it stays a tombstone, so no later fetch brings it back."""
    with transaction.atomic():
        entry = _held(blog, entry_id)
        entry.review = Entry.Review.REJECTED
        entry.removed_at = timezone.now()
        entry.save()
        record(user, "rejected", entry, via, blog.slug)
    return entry


def _held(blog: Blog, entry_id) -> Entry:
    entry = (
        Entry.objects.select_for_update(of=("self",))
        .filter(pk__in=held(blog).filter(pk=entry_id).values("pk"))
        .select_related("feed")
        .first()
    )
    if entry is None:
        raise NotFound(f"no held entry {entry_id} in the blog {blog.slug!r}")
    return entry


@receiver(entry_arriving, sender=Entry, dispatch_uid="editors.hold_entry")
def hold_entry(sender, entry, **kwargs):
    """A new entry of a source held for approval in a blog that is still open waits in its queue."""
    if entry.feed_id is None:
        return
    if BlogSource.objects.filter(feed_id=entry.feed_id, hold=True, blog__ended_seq__isnull=True).exists():
        entry.review = Entry.Review.HELD
