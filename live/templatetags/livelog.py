"""Defense in depth at render time: ingest already cleaned these, but a row written before a
sanitizer fix, or edited by hand in the admin, must not reach the page raw."""

from django import template
from django.utils.safestring import mark_safe

from feeds.sanitizing import cleaner, http_url

register = template.Library()


@register.filter
def sanitized(html: str) -> str:
    """Stored summary HTML, sanitized again (nh3 is fast enough to run on every render)."""
    # The ingest allowlist, plus https images only (the page's policy); stored URLs are absolute.
    return mark_safe(cleaner(https_images=True).clean(html or ""))  # noqa: S308 - nh3's output is safe


@register.filter
def web_link(url: str) -> str:
    """The URL if it is http(s), else "" (so a javascript: link can never be rendered)."""
    return http_url(url or "")
