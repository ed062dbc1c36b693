"""Keep the database small: old entries lose their content but keep their identity."""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from feeds.models import Entry

BATCH = 5000


def prune_entries(now=None) -> int:
    """Blank entries first seen more than FEEDS_RETENTION_DAYS ago; returns how many.

    The row and its (feed, key) stay, so a feed that still lists a pruned entry cannot bring it
    back. A bulk update on purpose: no per-entry event is pushed for old news, and a reader
    resuming from an old cursor is told these entries were removed.
    """
    days = settings.FEEDS_RETENTION_DAYS
    if not days:
        return 0
    now = now or timezone.now()
    cutoff = now - timedelta(days=days)
    pruned = 0
    while True:
        ids = list(
            Entry.objects.filter(first_seen__lt=cutoff, removed_at__isnull=True).values_list("id", flat=True)[
                :BATCH
            ]
        )
        if not ids:
            return pruned
        pruned += Entry.objects.filter(id__in=ids).update(
            removed_at=now, title="", summary_html="", link="", author="", guid=""
        )
