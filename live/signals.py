from celery.signals import task_postrun
from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from feeds.models import Entry
from live.broadcast import broadcast, flush
from live.events import encode, event

# Saves that touch only these fields change nothing a reader sees.
INVISIBLE = {"seq", "created_seq", "content_hash", "update_count"}


@receiver(post_save, sender=Entry, dispatch_uid="live.push_entry")
def push_entry(sender, instance, created, update_fields=None, **kwargs):
    """Tell live readers about a new, changed or removed entry once its transaction commits."""
    if update_fields is not None and set(update_fields) <= INVISIBLE:
        return
    # Serialize now, while the row is in hand; send after commit, so a reader is never told
    # of a row it cannot read, and a failed send cannot roll the write back.
    text = encode(event(instance))
    seq, feed_id, created = instance.seq, instance.feed_id, instance.created_seq
    transaction.on_commit(lambda: broadcast(seq, feed_id, text, created), robust=True)


@receiver(task_postrun, dispatch_uid="live.flush_pushes")
def flush_pushes(**kwargs):
    """Let a task's pushes leave before its worker takes the next task, or exits."""
    flush()
