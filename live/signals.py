from celery.signals import task_postrun
from django.db import transaction
from django.dispatch import receiver

from feeds.changelog import entry_changed
from live.delivery import flush, publish
from live.events import encode, event


@receiver(entry_changed, dispatch_uid="live.push_entry")
def push_entry(sender, entry, **kwargs):
    """Tell live readers about a new, changed or removed entry once its transaction commits."""
    # Serialize now, while the row is in hand; send after commit, so a reader is never told
    # of a row it cannot read, and a failed send cannot roll the write back.
    text = encode(event(entry))
    seq, feed_id, created = entry.seq, entry.feed_id, entry.created_seq
    transaction.on_commit(lambda: publish(seq, feed_id, text, created), robust=True)


@receiver(task_postrun, dispatch_uid="live.flush_pushes")
def flush_pushes(**kwargs):
    """Let a task's pushes leave before its worker takes the next task, or exits."""
    flush()
