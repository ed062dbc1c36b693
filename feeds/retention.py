"""Keep the database small: old entries lose their content but keep their identity."""

from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from feeds.models import Entry

BATCH = 5000

# Conditions on entries that keep them whatever their age. Apps that archive entries register one
# (live blogs keep theirs: blogs/apps.py), so feeds needs to know nothing of them.
KEEPERS: list[Callable[[], Q]] = []


def keep(condition: Callable[[], Q]) -> None:
    if condition not in KEEPERS:
        KEEPERS.append(condition)


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
    due = Entry.objects.filter(first_seen__lt=cutoff, removed_at__isnull=True)
    for condition in KEEPERS:
        due = due.exclude(condition())
    while True:
        ids = list(due.values_list("id", flat=True)[:BATCH])
        if not ids:
            return pruned
        pruned += Entry.objects.filter(id__in=ids).update(
            removed_at=now, title="", summary_html="", link="", author="", guid=""
        )
