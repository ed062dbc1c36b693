from django import template

from feeds.models import Entry

register = template.Library()

MAX_KEY_EVENTS = 50


@register.simple_tag
def blog_marks(blog) -> dict:
    """The blog's pinned entries (newest pin first) and key events (newest first), for its page."""
    from editors.actions import in_blog

    shown = Entry.objects.filter(in_blog(blog), removed_at__isnull=True, review="").select_related("feed")
    if blog.ended_seq is not None:
        shown = shown.filter(created_seq__lte=blog.ended_seq)
    shown = shown.distinct()
    return {
        "pinned": list(shown.filter(pinned_at__isnull=False).order_by("-pinned_at")[:3]),
        "key_events": list(shown.filter(key_event=True).order_by("-created_seq")[:MAX_KEY_EVENTS]),
    }


@register.filter
def is_editor(user) -> bool:
    """Whether the page sends this user the editor's tools (markup and script)."""
    return user.is_authenticated and any(
        user.has_perm(p) for p in ("editors.post", "editors.mark", "editors.moderate")
    )
