from celery.signals import task_postrun
from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from blogs.models import BlogChange
from feeds.changelog import arrival, entry_changed
from live.delivery import flush, publish
from live.events import change_event, encode, event


@receiver(entry_changed, dispatch_uid="live.push_entry")
def push_entry(sender, entry, **kwargs):
    """Tell live readers about a new, changed or removed entry once its transaction commits."""
    # Serialize now, while the row is in hand; send after commit, so a reader is never told
    # of a row it cannot read, and a failed send cannot roll the write back.
    text = encode(event(entry))
    seq, feed_id, created = entry.seq, entry.feed_id, entry.created_seq
    blog = entry.blog_id if feed_id is None else None  # a post: for its blog's readers only
    arrived = arrival.get()  # how and when a fetched or pushed entry's content came in
    transaction.on_commit(lambda: publish(seq, feed_id, text, created, blog, arrived=arrived), robust=True)


@receiver(post_save, sender=BlogChange, dispatch_uid="live.push_blog_change")
def push_blog_change(sender, instance, created, **kwargs):
    """Tell a blog's live readers about its own change (an end, a source added or removed) on commit."""
    if not created:
        return
    text = encode(change_event(instance))
    seq, feed_id, blog, kind = instance.seq, instance.feed_id, instance.blog_id, instance.kind
    transaction.on_commit(lambda: publish(seq, feed_id, text, 0, blog, kind), robust=True)


@receiver(task_postrun, dispatch_uid="live.flush_pushes")
def flush_pushes(**kwargs):
    """Let a task's pushes leave before its worker takes the next task, or exits."""
    flush()
