"""Live blogs: several at once, each following its own sources, with its own stream and end.

Design (for whoever builds on it, e.g. editors' posts, pins and the moderation queue):

- `Blog`: slug, title, description, optional share image, and a state (scheduled, live, ended)
  with its start and end times. `seq` is the change number (feeds.changelog.next_seq, the one
  commit-order counter shared with entries) of its latest visible change; `ended_seq` that of its
  end: an ended blog holds the entries first seen up to it (`created_seq <= ended_seq`), frozen.
- `BlogSource`: a feed the blog follows (unique per blog and feed; a feed may feed several blogs).
  `added_seq` is the change number of its addition: an entry change numbered after it belongs to
  the blog's stream. `hold` marks a source "held for approval" (its entries wait for an editor;
  the editors' work implements the queue, this app only stores the flag).
- `BlogChange`: a change to one blog's stream that is not an entry's own change, with its own
  number from the same counter, so a reader resumes across it like any other change (`after=`,
  `prev`). Kinds: `blog.updated` (title, description, state, times), `blog.ended`,
  `source.added` then one `entry.created` per recent entry of that source (the entry brought in,
  so open pages and resuming readers get it), `source.removed` (pages drop that source's entries).
  The live app sends each one, after commit, to the blog's readers only. More kinds (a post, a
  pin, an approval) fit the same table: a row with a number, routed to its blog.

Everything that changes a blog's stream goes through the functions below (or the models' save and
delete, which the admin uses), so the number and the row always commit together.
"""

from django.db import models, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from feeds.changelog import next_seq
from feeds.models import Entry, Feed

# How many of a new source's newest entries are brought into a blog's open pages (a page's length).
BROUGHT_IN = 50


class Blog(models.Model):
    class State(models.TextChoices):
        SCHEDULED = "scheduled", "scheduled"
        LIVE = "live", "live"
        ENDED = "ended", "ended"

    slug = models.SlugField(max_length=100, unique=True)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    image_url = models.URLField(
        max_length=2048, blank=True, help_text="An https image for sharing (og:image)."
    )
    state = models.CharField(max_length=10, choices=State.choices, default=State.LIVE)
    starts_at = models.DateTimeField(null=True, blank=True, help_text="A scheduled blog goes live then.")
    ends_at = models.DateTimeField(
        null=True, blank=True, help_text="The blog ends then (or when it was ended)."
    )
    sources = models.ManyToManyField(Feed, through="BlogSource", related_name="blogs", blank=True)

    seq = models.BigIntegerField(null=True, blank=True, editable=False)
    ended_seq = models.BigIntegerField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Fields a reader sees: changing one is a change in the blog's stream.
    VISIBLE = ("title", "description", "image_url", "state", "starts_at", "ends_at")

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["state", "ends_at"], name="blog_due")]

    def __str__(self):
        return self.title

    def save(self, *args, **kwargs):
        loaded = getattr(self, "_loaded", None)
        changed = self._state.adding is False and loaded is not None and loaded != self._visible()
        ending = self.ended and self.ended_seq is None
        if self.ended and (self.ends_at is None or self.ends_at > timezone.now()):
            self.ends_at = timezone.now()
        update_fields = kwargs.get("update_fields")
        if update_fields is not None:
            kwargs["update_fields"] = {*update_fields, "seq", "ended_seq", "ends_at", "updated_at"}
        with transaction.atomic():
            if changed or ending:
                self.seq = next_seq()
                if ending:
                    self.ended_seq = self.seq
            super().save(*args, **kwargs)
            if (changed or ending) and self.seq is not None:
                kind = BlogChange.Kind.ENDED if ending else BlogChange.Kind.UPDATED
                BlogChange.objects.create(blog=self, seq=self.seq, kind=kind)
        self._loaded = self._visible()

    @classmethod
    def from_db(cls, db, field_names, values):
        blog = super().from_db(db, field_names, values)
        blog._loaded = blog._visible()
        return blog

    def _visible(self):
        return tuple(getattr(self, name, None) for name in self.VISIBLE)

    @property
    def ended(self) -> bool:
        return self.state == self.State.ENDED


class BlogSource(models.Model):
    blog = models.ForeignKey(Blog, on_delete=models.CASCADE, related_name="blog_sources")
    feed = models.ForeignKey(Feed, on_delete=models.CASCADE, related_name="blog_sources")
    hold = models.BooleanField(
        default=False, help_text="Hold this source's new entries for an editor's approval."
    )
    added_seq = models.BigIntegerField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "source"
        constraints = [models.UniqueConstraint(fields=["blog", "feed"], name="one_source_per_blog")]

    def __str__(self):
        return str(self.feed)

    def save(self, *args, **kwargs):
        loaded = getattr(self, "_loaded_feed_id", None)
        with transaction.atomic():
            if self._state.adding or loaded != self.feed_id:
                if not self._state.adding:  # another feed in the same row: the old one leaves
                    _record_removal(self.blog, loaded)
                self.added_seq = next_seq()
                super().save(*args, **kwargs)
                _record_addition(self)
            else:
                super().save(*args, **kwargs)
        self._loaded_feed_id = self.feed_id

    def delete(self, *args, **kwargs):
        with transaction.atomic():
            _record_removal(self.blog, self.feed_id)
            return super().delete(*args, **kwargs)

    @classmethod
    def from_db(cls, db, field_names, values):
        source = super().from_db(db, field_names, values)
        source._loaded_feed_id = source.feed_id
        return source


class BlogChange(models.Model):
    """A change in one blog's stream other than an entry's own change (see the module's note)."""

    class Kind(models.TextChoices):
        UPDATED = "blog.updated", "blog updated"
        ENDED = "blog.ended", "blog ended"
        SOURCE_ADDED = "source.added", "source added"
        SOURCE_REMOVED = "source.removed", "source removed"
        ENTRY_ADDED = "entry.created", "entry brought in with its source"

    blog = models.ForeignKey(Blog, on_delete=models.CASCADE, related_name="changes")
    seq = models.BigIntegerField(unique=True)
    kind = models.CharField(max_length=30, choices=Kind.choices)
    # A plain number, not a key: the change outlives a deleted feed.
    feed_id = models.BigIntegerField(null=True, blank=True)
    entry = models.ForeignKey(Entry, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["blog", "seq"], name="blog_change_seq")]

    def __str__(self):
        return f"{self.kind} {self.seq}"


def _record_addition(source: BlogSource) -> None:
    # The addition first, then the source's newest entries, oldest first, each a change of its
    # own: an open page inserts each in its place; a reader resuming from before gets them all.
    BlogChange.objects.create(
        blog_id=source.blog_id,
        seq=source.added_seq,
        kind=BlogChange.Kind.SOURCE_ADDED,
        feed_id=source.feed_id,
    )
    recent = Entry.objects.filter(
        feed_id=source.feed_id, removed_at__isnull=True, review="", created_seq__isnull=False
    )
    for entry in reversed(list(recent.order_by("-created_seq")[:BROUGHT_IN])):
        BlogChange.objects.create(
            blog_id=source.blog_id,
            seq=next_seq(),
            kind=BlogChange.Kind.ENTRY_ADDED,
            feed_id=source.feed_id,
            entry=entry,
        )


def _record_removal(blog: Blog, feed_id: int) -> None:
    BlogChange.objects.create(blog=blog, seq=next_seq(), kind=BlogChange.Kind.SOURCE_REMOVED, feed_id=feed_id)


def kept_by_blogs() -> Q:
    """Entries that stay after the river's retention period: every post, and every entry of a blog's
    sources (an ended blog's, up to its end), so a blog's archive keeps what it covered."""
    followed = BlogSource.objects.filter(feed_id=OuterRef("feed_id")).filter(
        Q(blog__ended_seq__isnull=True) | Q(blog__ended_seq__gte=OuterRef("created_seq"))
    )
    return Q(blog__isnull=False) | Q(Exists(followed))


def add_source(blog: Blog, feed: Feed, hold: bool = False) -> tuple[BlogSource, bool]:
    """Follow a feed in a blog (idempotent); returns the source and whether it is new."""
    with transaction.atomic():
        source = BlogSource.objects.select_for_update().filter(blog=blog, feed=feed).first()
        if source is not None:
            if source.hold != hold:
                source.hold = hold
                source.save(update_fields=["hold"])
            return source, False
        return BlogSource.objects.create(blog=blog, feed=feed, hold=hold), True


def remove_source(blog: Blog, feed: Feed) -> bool:
    """Stop following a feed in a blog: its entries leave the blog's open pages."""
    source = BlogSource.objects.filter(blog=blog, feed=feed).first()
    if source is None:
        return False
    source.delete()
    return True


def end_blog(blog: Blog) -> bool:
    """End a blog now; returns False if it had already ended. Open pages are told."""
    with transaction.atomic():
        blog = Blog.objects.select_for_update().get(pk=blog.pk)
        if blog.ended:
            return False
        blog.state = Blog.State.ENDED
        blog.save()
    return True


def update_due_blogs(now=None) -> tuple[int, int]:
    """Start scheduled blogs whose time has come and end those past their end; (started, ended)."""
    now = now or timezone.now()
    started = ended = 0
    for pk in Blog.objects.filter(state=Blog.State.SCHEDULED, starts_at__lte=now).values_list(
        "pk", flat=True
    ):
        with transaction.atomic():
            blog = Blog.objects.select_for_update().filter(pk=pk, state=Blog.State.SCHEDULED).first()
            if blog is not None and (blog.ends_at is None or blog.ends_at > now):
                blog.state = Blog.State.LIVE
                blog.save()
                started += 1
    due = Blog.objects.exclude(state=Blog.State.ENDED).filter(ends_at__lte=now)
    for blog in due:
        ended += end_blog(blog)
    return started, ended
