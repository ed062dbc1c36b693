from django.db import models, transaction
from django.dispatch import Signal
from django.utils import timezone

# Sent with `entry` before a new entry is first saved: a receiver may hold it for review
# (entry.review = Entry.Review.HELD), and then it takes no change number. The editors' moderation
# queue listens; feeds itself knows nothing of blogs or editors.
entry_arriving = Signal()


class ChangeCounter(models.Model):
    """A single row: the last change number given to an entry (feeds/changelog.py)."""

    value = models.BigIntegerField(default=0)

    def __str__(self):
        return str(self.value)


class Feed(models.Model):
    """A source we follow. Scheduling state lives here so that one UPDATE claims a fetch."""

    class Why(models.TextChoices):
        INTERVAL = "interval", "interval"
        BACKOFF = "backoff", "backoff after errors"
        RETRY_AFTER = "retry-after", "server asked to retry later"
        PAUSED = "paused", "paused after repeated errors"
        DISABLED = "disabled", "disabled"

    url = models.URLField(max_length=2048, unique=True)
    title = models.CharField(max_length=500, blank=True)
    site_url = models.URLField(max_length=2048, blank=True)
    enabled = models.BooleanField(default=True)
    interval = models.PositiveIntegerField(default=5, help_text="Seconds between fetches.")

    etag = models.CharField(max_length=500, blank=True)
    last_modified = models.CharField(max_length=100, blank=True)
    # Hash of the last body parsed: an unchanged body (servers without validators) skips parsing.
    body_hash = models.CharField(max_length=64, blank=True)

    last_fetched_at = models.DateTimeField(null=True, blank=True)
    next_fetch_at = models.DateTimeField(default=timezone.now, db_index=True)
    next_fetch_reason = models.CharField(max_length=20, choices=Why.choices, default=Why.INTERVAL)
    # While set and in the future, a worker holds this feed; nobody else fetches it.
    lease_until = models.DateTimeField(null=True, blank=True)

    error_count = models.PositiveIntegerField(default=0, help_text="Consecutive failed fetches.")
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)

    # A permanent redirect is only stored after it has been seen several times in a row.
    redirect_url = models.URLField(max_length=2048, blank=True)
    redirect_count = models.PositiveSmallIntegerField(default=0)

    fetch_count = models.PositiveIntegerField(default=0)
    not_modified_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    # WebSub, as the last fetch advertised it: the hubs that push this feed and its canonical URL.
    hubs = models.JSONField(default=list, blank=True)
    topic = models.URLField(max_length=2048, blank=True)
    # While in the future, a hub pushes this feed: it is polled every FEEDS_PUSHED_INTERVAL instead.
    pushed_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["enabled", "next_fetch_at"], name="feed_due")]

    def __str__(self):
        return self.title or self.url


class Entry(models.Model):
    """One item of a feed, or an editor's post in a blog (no feed). `key` is its identity; the
    database refuses a second row with it in a feed."""

    class Review(models.TextChoices):
        NONE = "", "published"
        HELD = "held", "held for approval"
        REJECTED = "rejected", "rejected"

    feed = models.ForeignKey(Feed, null=True, blank=True, on_delete=models.CASCADE, related_name="entries")
    # A post belongs to one blog (and has no feed); its Markdown source is kept to edit it.
    blog = models.ForeignKey(
        "blogs.Blog", null=True, blank=True, on_delete=models.CASCADE, related_name="posts"
    )
    body = models.TextField(blank=True, help_text="A post's Markdown source.")
    # sha256 of the identity (id, else link, else title and content): fixed width for the index.
    key = models.CharField(max_length=64)
    guid = models.TextField(blank=True)
    link = models.URLField(max_length=2048, blank=True)
    title = models.TextField(blank=True)
    summary_html = models.TextField(blank=True)
    author = models.CharField(max_length=500, blank=True)
    published = models.DateTimeField()
    updated = models.DateTimeField()
    first_seen = models.DateTimeField(default=timezone.now)
    # Hash of the visible fields: a changed hash is an in-place update.
    content_hash = models.CharField(max_length=64, blank=True)
    update_count = models.PositiveIntegerField(default=0)
    # An entry removed by an admin is kept as a tombstone, so the feed cannot bring it back.
    removed_at = models.DateTimeField(null=True, blank=True)
    # Held entries (a source held for approval) and rejected ones are no reader's change: they
    # take no change number (seq stays None) until approved, so no stream, list or page has them.
    review = models.CharField(max_length=10, choices=Review.choices, default="", blank=True, db_index=True)
    # Editors' marks; each one is a change with its own number. Pins are shown newest pin first.
    pinned_at = models.DateTimeField(null=True, blank=True, db_index=True)
    key_event = models.BooleanField(default=False, db_index=True)
    # The change number of the latest change that was only a mark: it does not make an entry "updated".
    mark_seq = models.BigIntegerField(null=True, blank=True)

    # The change log's numbers (feeds/changelog.py): `seq` of its latest visible change,
    # `created_seq` of its first appearance (display order).
    seq = models.BigIntegerField(null=True, blank=True, db_index=True)
    created_seq = models.BigIntegerField(null=True, blank=True, db_index=True)

    class Meta:
        verbose_name_plural = "entries"
        constraints = [models.UniqueConstraint(fields=["feed", "key"], name="one_entry_per_key")]

    def __str__(self):
        return self.title or self.link or self.guid

    def save(self, *args, mark_only: bool = False, **kwargs):
        """Save; a change a reader can see takes the next number (feeds/changelog.py).

        `mark_only`: the change only pins or marks the entry, so it does not make it "updated".
        """
        from feeds import changelog

        update_fields = kwargs.get("update_fields")
        if self._state.adding and self.pk is None:
            entry_arriving.send(sender=Entry, entry=self)
        # The number and the row commit together, or a later number could be seen first.
        with transaction.atomic():
            # Held and rejected entries are no reader's change: no number, nothing sent.
            changed = not self.review and changelog.is_change(self, update_fields)
            if changed:
                unchanged = not self.corrected
                changelog.log(self)
                if mark_only and unchanged:
                    self.mark_seq = self.seq
                if update_fields is not None:
                    kwargs["update_fields"] = {*update_fields, "seq", "created_seq", "mark_seq"}
            super().save(*args, **kwargs)
            self._seen = changelog.seen(self)
            if changed:
                changelog.entry_changed.send(sender=Entry, entry=self)

    @classmethod
    def from_db(cls, db, field_names, values):
        from feeds import changelog  # it reads entries: imported when first needed

        entry = super().from_db(db, field_names, values)
        entry._seen = changelog.seen(entry)
        return entry

    @property
    def cursor(self) -> str:
        return str(self.seq)

    @property
    def corrected(self) -> bool:
        """Changed since it first appeared (by its feed or an editor), pins and key events aside."""
        return self.seq != self.created_seq and self.seq != self.mark_seq

    @property
    def kind(self) -> str:
        return "feed" if self.feed_id is not None else "post"

    @property
    def visible(self) -> bool:
        return self.removed_at is None and not self.review


class Subscription(models.Model):
    """A WebSub subscription of a feed's topic at one hub: its own callback token and secret.

    `pending` is the request the hub has yet to verify ("subscribe" or "unsubscribe"): the callback
    answers a verification of intent only for that mode. The row outlives its feed (SET_NULL) so that
    a removed feed can still be unsubscribed, and an old callback keeps answering 410.
    """

    class State(models.TextChoices):
        REQUESTED = "requested", "requested, waiting for the hub to verify"
        ACTIVE = "active", "active"
        UNSUBSCRIBED = "unsubscribed", "unsubscribed"
        EXPIRED = "expired", "lease expired"

    feed = models.ForeignKey(Feed, null=True, on_delete=models.SET_NULL, related_name="subscriptions")
    hub = models.URLField(max_length=2048)
    topic = models.URLField(max_length=2048)
    # The unguessable part of the callback URL, and the HMAC key the hub signs content with.
    token = models.CharField(max_length=64, unique=True)
    secret = models.CharField(max_length=128)
    state = models.CharField(max_length=20, choices=State.choices, default=State.REQUESTED)
    pending = models.CharField(max_length=20, blank=True)
    requested_at = models.DateTimeField(null=True, blank=True)

    lease_seconds = models.PositiveIntegerField(null=True, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # When the subscription needs the next request (renewal, retry after a failure, unsubscribe).
    next_action_at = models.DateTimeField(null=True, blank=True, db_index=True)

    error_count = models.PositiveIntegerField(default=0, help_text="Consecutive failed requests.")
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)

    push_count = models.PositiveIntegerField(default=0)
    last_push_at = models.DateTimeField(null=True, blank=True)
    refused_count = models.PositiveIntegerField(default=0, help_text="Pushes refused (bad signature, ...).")
    # Entries a poll found that this hub had not pushed; a miss sends the feed back to normal polling.
    missed_count = models.PositiveIntegerField(default=0)
    demoted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return f"{self.topic} at {self.hub} ({self.state})"
