"""The change log: every change a reader can see takes the next number, in commit order.

An entry carries two numbers: `seq`, its latest change, and `created_seq`, its first (its place in
the list). Readers resume from a number (a cursor) and read here what came after it. A save that
changes nothing a reader sees takes no number and sends nothing.
"""

from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime

from django.db import connection
from django.db.models import Max
from django.dispatch import Signal

from feeds.models import Entry

# What a reader sees of an entry (live/events.py sends these): a save that changes none is no change.
VISIBLE = (
    "feed_id", "title", "link", "summary_html", "author", "published", "updated", "removed_at",
    "review", "pinned_at", "key_event",
)  # fmt: skip
# Changes read at most per query.
PAGE = 500

# Sent with `entry` inside the transaction that logged its change; receivers act on commit.
entry_changed = Signal()
# How the content being stored arrived ("push", "poll") and when (a time.time() value), while it is
# stored: live measures from there to delivery.
arrival: ContextVar[tuple[str, float] | None] = ContextVar("arrival", default=None)


@contextmanager
def arriving(via: str, at: datetime):
    """Changes logged inside this block carry how and when their content arrived."""
    token = arrival.set((via, at.timestamp()))
    try:
        yield
    finally:
        arrival.reset(token)


def next_seq() -> int:
    """Take the next change number, in commit order.

    The counter row stays locked until the caller's transaction ends, so a transaction that
    takes a number commits before any transaction that takes a later one: the numbers are
    commit order and have no gaps (a rollback gives its number back). Call inside atomic().
    """
    with connection.cursor() as cursor:
        cursor.execute("UPDATE feeds_changecounter SET value = value + 1 WHERE id = 1 RETURNING value")
        row = cursor.fetchone()
        if row is None:
            # A migration creates the row; a flushed (test) database lacks it. Recreate it once.
            cursor.execute(
                "INSERT INTO feeds_changecounter (id, value) "
                "SELECT 1, COALESCE(MAX(seq), 0) FROM feeds_entry ON CONFLICT DO NOTHING"
            )
            cursor.execute("UPDATE feeds_changecounter SET value = value + 1 WHERE id = 1 RETURNING value")
            row = cursor.fetchone()
        return row[0]


def seen(entry: Entry) -> dict:
    """The visible values an entry has in the database, as far as this instance loaded them."""
    return {name: entry.__dict__[name] for name in VISIBLE if name in entry.__dict__}


def is_change(entry: Entry, update_fields=None) -> bool:
    """Whether saving `entry` (with these update_fields) changes something a reader sees."""
    if entry._state.adding:
        return True
    names = VISIBLE
    if update_fields is not None:
        wanted = {Entry._meta.get_field(name).attname for name in update_fields}
        names = [name for name in VISIBLE if name in wanted]
    before = getattr(entry, "_seen", {})
    # A field neither loaded nor set is not in __dict__: it cannot have changed.
    return any(
        name in entry.__dict__ and (name not in before or before[name] != entry.__dict__[name])
        for name in names
    )


def log(entry: Entry) -> None:
    """Give the entry the next number (and its first, if new). Call inside the saving transaction."""
    entry.seq = next_seq()
    if entry.created_seq is None:
        entry.created_seq = entry.seq


# Reads


def latest_seq() -> int:
    return Entry.objects.aggregate(latest=Max("seq"))["latest"] or 0


def changes_after(after: int, upto: int | None = None, feed_id: int | None = None, limit: int = PAGE) -> list:
    """Entries of the river whose latest change is in (after, upto], oldest change first."""
    # Posts (no feed) are in their blog's stream only, not in the river of sources.
    rows = Entry.objects.filter(seq__gt=after, feed__isnull=False).select_related("feed").order_by("seq")
    if upto is not None:
        rows = rows.filter(seq__lte=upto)
    if feed_id is not None:
        rows = rows.filter(feed_id=feed_id)
    return list(rows[:limit])


def latest_changes(upto: int, limit: int) -> list:
    """Entries of the newest `limit` changes up to `upto`, oldest first."""
    rows = Entry.objects.filter(seq__lte=upto).select_related("feed").order_by("-seq")[:limit]
    return list(reversed(rows))
