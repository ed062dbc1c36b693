"""Changes read from the change log (feeds/changelog.py), encoded as events."""

from feeds.changelog import PAGE, changes_after, latest_changes, latest_seq
from feeds.models import Entry
from live.events import encode, event

__all__ = ["PAGE", "encoded_changes", "latest_encoded", "latest_seq"]


def encoded_changes(
    after: int, upto: int, feed_id: int | None, seen: int | None
) -> list[tuple[int, int, int, str]]:
    """One page of (seq, feed id, created_seq, encoded event) after `after`, for a reader who has
    seen every change up to `seen` (None: a live reader, who has seen everything before each change)."""
    return [_row(e, seen) for e in changes_after(after, upto, feed_id)]


def latest_encoded(upto: int, limit: int) -> list[tuple[int, int, int, str]]:
    """The newest `limit` changes up to `upto`, oldest first, encoded for a live reader."""
    return [_row(e, None) for e in latest_changes(upto, limit)]


def _row(entry: Entry, seen: int | None) -> tuple[int, int, int, str]:
    return entry.seq, entry.feed_id, entry.created_seq, encode(event(entry, seen))
