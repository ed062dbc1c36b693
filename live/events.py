"""The one shape of an event, shared by the live socket, the replay and the JSON API."""

import json

from feeds.models import Entry, Feed


def iso(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def entry_data(entry: Entry) -> dict:
    return {
        "id": entry.pk,
        # "post": an editor's, in one blog, with no feed; "feed": an item of a source.
        "kind": entry.kind,
        "feed": None
        if entry.feed_id is None
        else {"id": entry.feed_id, "title": entry.feed.title or entry.feed.url},
        "title": entry.title,
        "link": entry.link,
        "summary_html": entry.summary_html,
        "author": entry.author,
        "published": iso(entry.published),
        "updated": iso(entry.updated),
        "corrected": entry.corrected,
        # Where it stands in the list (the cursor of its first change): a page puts back an entry
        # it does not show, restored by the editors, in its place.
        "position": str(entry.created_seq),
        # Pinned entries are shown in a block at the top of a blog, newest pin first.
        "pinned": entry.pinned_at is not None,
        "pinned_at": iso(entry.pinned_at),
        "key_event": entry.key_event,
    }


def event_type(entry: Entry, after: int | None = None) -> str:
    """What a reader who has seen every change up to `after` is told about this entry.

    Live (no `after`), the reader has seen everything before this change.
    """
    if entry.removed_at is not None:
        return "entry.deleted"
    seen = entry.seq - 1 if after is None else after
    return "entry.created" if entry.created_seq > seen else "entry.updated"


def event(entry: Entry, after: int | None = None) -> dict:
    return {"type": event_type(entry, after), "cursor": entry.cursor, "entry": entry_data(entry)}


def blog_data(blog) -> dict:
    return {
        "id": blog.pk,
        "slug": blog.slug,
        "title": blog.title,
        "description": blog.description,
        "state": blog.state,
        "starts_at": iso(blog.starts_at),
        "ends_at": iso(blog.ends_at),
        "image_url": blog.image_url,
        "url": f"/blogs/{blog.slug}/",
    }


def change_event(change, after: int | None = None) -> dict:
    """A blog's own change (blogs.models.BlogChange) as its readers are told it.

    `blog.updated` and `blog.ended` carry the blog; `source.added` and `source.removed` the feed
    (pages drop a removed source's entries); an entry brought in with its new source is an
    `entry.created` (or `entry.deleted`, if removed since) with this change's cursor.
    """
    message = {"type": change.kind, "cursor": str(change.seq)}
    if change.kind in ("blog.updated", "blog.ended"):
        message["blog"] = blog_data(change.blog)
    elif change.kind in ("source.added", "source.removed"):
        feed = Feed.objects.filter(pk=change.feed_id).first()
        message["feed"] = {"id": change.feed_id, "title": (feed.title or feed.url) if feed else ""}
    else:
        entry = change.entry
        if entry.removed_at is not None:
            message["type"] = "entry.deleted"
        message["entry"] = entry_data(entry)
    return message


def with_prev(text: str, prev: int | None) -> str:
    """The encoded event, saying which change came before it in the reader's stream.

    A reader whose last cursor is lower than `prev` has missed something: it resumes from its
    cursor. Spliced into the text rather than re-encoded: the hub does this once per event.
    """
    if prev is None:
        return text  # not known (the hub has just joined): the reader cannot check this one
    return f'{{"prev":"{prev}",{text[1:]}'


def as_created(text: str) -> str:
    """An `entry.updated` event retold to a reader who never saw the entry: for it, it is new."""
    message = json.loads(text)
    if message["type"] == "entry.updated":
        message["type"] = "entry.created"
    return encode(message)


def encode(message: dict) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)
