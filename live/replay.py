"""Changes read from the change log (feeds/changelog.py) and the blogs' own, encoded as events.

A change is an entry's own change (its row's `seq`) or a change of one blog's stream
(blogs.models.BlogChange). Rows handed to the hub are (seq, feed id, created_seq, encoded event)
for an entry's change, with (…, blog id, kind) appended for a blog's change.
"""

from django.db.models import Max, Q

from blogs.models import Blog, BlogChange, BlogSource
from feeds import changelog
from feeds.changelog import PAGE, changes_after
from feeds.models import Entry
from live.events import change_event, encode, event

__all__ = ["PAGE", "encoded_changes", "encoded_all_changes", "latest_encoded", "latest_seq"]


def in_blog(blog: Blog, feed_id: int | None = None) -> Q:
    """Entry changes that belong to a blog's stream: of its sources, after each was added (and, for
    an ended blog, up to its end)."""
    # Its posts (no feed), unless the reader follows one source of it.
    condition = Q(blog=blog, feed__isnull=True) if feed_id is None else Q()
    sources = blog.blog_sources.all() if feed_id is None else blog.blog_sources.filter(feed_id=feed_id)
    for feed, added in sources.values_list("feed_id", "added_seq"):
        condition |= Q(feed_id=feed, seq__gt=added or 0)
    if not condition:
        return Q(pk__in=[])
    if blog.ended_seq is not None:
        condition &= Q(seq__lte=blog.ended_seq)
    return condition


def blog_changes_after(
    blog: Blog, after: int, upto: int | None = None, feed_id: int | None = None, limit: int = PAGE
) -> tuple[list, bool]:
    """A blog's stream after `after`: its entries' changes and its own changes, merged in commit order,
    as (entries and BlogChange rows, whether more follow)."""
    entries = Entry.objects.filter(in_blog(blog, feed_id), seq__gt=after).select_related("feed")
    changes = BlogChange.objects.filter(blog=blog, seq__gt=after).select_related("blog", "entry__feed")
    if feed_id is not None:
        # One source's stream in a blog: that source's changes and the blog's own (its end).
        changes = changes.filter(Q(feed_id=feed_id) | Q(feed_id__isnull=True))
    if upto is not None:
        entries, changes = entries.filter(seq__lte=upto), changes.filter(seq__lte=upto)
    return _merge(entries.order_by("seq"), changes.order_by("seq"), limit)


def all_changes_after(after: int, upto: int, limit: int = PAGE) -> tuple[list, bool]:
    """Every change in (after, upto]: entries and every blog's own changes (what a hub receives)."""
    entries = Entry.objects.filter(seq__gt=after, seq__lte=upto).select_related("feed").order_by("seq")
    changes = (
        BlogChange.objects.filter(seq__gt=after, seq__lte=upto)
        .select_related("blog", "entry__feed")
        .order_by("seq")
    )
    return _merge(entries, changes, limit)


def _merge(entries, changes, limit) -> tuple[list, bool]:
    entries, changes = list(entries[:limit]), list(changes[:limit])
    # A full page of one kind may be followed by more of it: stop where the shorter read ends.
    full = [rows[-1].seq for rows in (entries, changes) if len(rows) == limit]
    merged = sorted(entries + changes, key=lambda row: row.seq)
    if full:
        merged = [row for row in merged if row.seq <= min(full)]
    return merged, bool(full)


def encoded_changes(
    after: int, upto: int, feed_id: int | None, seen: int | None, blog_id: int | None = None
) -> tuple[list[tuple], bool]:
    """One page of encoded rows after `after`, for a reader who has seen every change up to `seen`
    (None: a live reader, who has seen everything before each change), and whether more follow.
    Without `blog_id`: a reader of every feed or of one; with it, that blog's stream."""
    if blog_id is not None:
        # Read afresh: the blog may have ended, or changed its sources, since the reader came.
        rows, more = blog_changes_after(Blog.objects.get(pk=blog_id), after, upto, feed_id)
    else:
        rows = changes_after(after, upto, feed_id)
        more = len(rows) == PAGE
    return [_row(row, seen) for row in rows], more


def encoded_all_changes(after: int, upto: int) -> tuple[list[tuple], bool]:
    rows, more = all_changes_after(after, upto)
    return [_row(row, None) for row in rows], more


def latest_encoded(upto: int, limit: int) -> list[tuple]:
    """The newest `limit` changes up to `upto`, oldest first, encoded for a live reader."""
    entries = changelog.latest_changes(upto, limit)
    changes = (
        BlogChange.objects.filter(seq__lte=upto)
        .select_related("blog", "entry__feed")
        .order_by("-seq")[:limit]
    )
    newest = sorted([*entries, *changes], key=lambda row: row.seq)[-limit:]
    return [_row(row, None) for row in newest]


def _row(row, seen: int | None) -> tuple:
    if isinstance(row, BlogChange):
        return row.seq, row.feed_id, 0, encode(change_event(row, seen)), row.blog_id, row.kind
    if row.feed_id is None:  # a post: its blog routes it
        return row.seq, None, row.created_seq, encode(event(row, seen)), row.blog_id, ""
    return row.seq, row.feed_id, row.created_seq, encode(event(row, seen))


def latest_seq() -> int:
    """The newest change, an entry's or a blog's: every change up to it has committed."""
    changes = BlogChange.objects.aggregate(latest=Max("seq"))["latest"] or 0
    return max(changelog.latest_seq(), changes)


def live_sources() -> list[tuple[int, int, int]]:
    """(blog id, feed id, added_seq) of every source of a blog that has not ended: how a hub
    starts routing entries to blogs (the changes it receives keep this up to date)."""
    return list(
        BlogSource.objects.filter(blog__ended_seq__isnull=True).values_list("blog_id", "feed_id", "added_seq")
    )


def blog_by_slug(slug: str) -> Blog | None:
    return Blog.objects.filter(slug=slug).first()
