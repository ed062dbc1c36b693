"""Read missed changes from the database, in commit order."""

from django.db.models import Max

from feeds.models import Entry
from live.events import encode, event

PAGE = 500


def changes_after(after: int, upto: int | None = None, feed_id: int | None = None, limit: int = PAGE):
    """Entries whose latest change is in (after, upto], oldest change first."""
    rows = Entry.objects.filter(seq__gt=after).select_related("feed").order_by("seq")
    if upto is not None:
        rows = rows.filter(seq__lte=upto)
    if feed_id is not None:
        rows = rows.filter(feed_id=feed_id)
    return list(rows[:limit])


def encoded_changes(
    after: int, upto: int, feed_id: int | None, seen: int | None
) -> list[tuple[int, int, int, str]]:
    """One page of (seq, feed id, created_seq, encoded event) after `after`, for a reader who has
    seen every change up to `seen` (None: a live reader, who has seen everything before each change)."""
    return [_row(e, seen) for e in changes_after(after, upto, feed_id)]


def latest_changes(upto: int, limit: int) -> list[tuple[int, int, int, str]]:
    """The newest `limit` changes up to `upto`, oldest first, encoded for a live reader."""
    rows = Entry.objects.filter(seq__lte=upto).select_related("feed").order_by("-seq")[:limit]
    return [_row(e, None) for e in reversed(rows)]


def _row(entry: Entry, seen: int | None) -> tuple[int, int, int, str]:
    return entry.seq, entry.feed_id, entry.created_seq, encode(event(entry, seen))


def latest_seq() -> int:
    return Entry.objects.aggregate(latest=Max("seq"))["latest"] or 0
