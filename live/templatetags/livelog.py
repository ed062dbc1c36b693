"""Defense in depth at render time: ingest already cleaned these, but a row written before a
sanitizer fix, or edited by hand in the admin, must not reach the page raw."""

from django import template
from django.utils.safestring import mark_safe

from feeds.parsing import http_url, sanitize_html

register = template.Library()


@register.filter
def sanitized(html: str) -> str:
    """Stored summary HTML, sanitized again (nh3 is fast enough to run on every render)."""
    return mark_safe(sanitize_html(html or ""))  # noqa: S308 - nh3's output is safe by construction


@register.filter
def web_link(url: str) -> str:
    """The URL if it is http(s), else "" (so a javascript: link can never be rendered)."""
    return http_url(url or "")
