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


def encoded_changes_after(after: int, upto: int | None, feed_id: int | None) -> tuple[list[str], int]:
    """One page of missed events, encoded, and the cursor to continue from (unchanged if none)."""
    rows = changes_after(after, upto, feed_id)
    last = rows[-1].seq if rows else after
    return [encode(event(entry, after)) for entry in rows], last


def latest_seq() -> int:
    return Entry.objects.aggregate(latest=Max("seq"))["latest"] or 0
