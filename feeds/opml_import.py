"""Adding the feeds of an OPML file: what the admin's upload and `importopml` share."""

from django.conf import settings

from feeds.fetching import FetchError, check_url
from feeds.models import Feed

MAX_URL = Feed._meta.get_field("url").max_length


def import_feeds(
    entries: list[tuple[str, str]], interval: int | None = None
) -> tuple[list[Feed], list[Feed], list[tuple[str, str]]]:
    """Add every (url, title) of `feeds.opml.feed_urls` that the fetch guard accepts.

    `interval` (seconds, 5 or more) applies to the new feeds; FEEDS_DEFAULT_INTERVAL without it.
    Returns (added feeds, feeds already present, (url, reason) refused), each in document order.
    """
    added, existing, refused = [], [], []
    for url, title in entries:
        try:
            url = check_url(url)
        except FetchError as exc:
            refused.append((url, str(exc)))
            continue
        if len(url) > MAX_URL:
            refused.append((url, f"the URL is longer than {MAX_URL} characters"))
            continue
        defaults = {"title": title[:500], "interval": max(interval or settings.FEEDS_DEFAULT_INTERVAL, 5)}
        feed, created = Feed.objects.get_or_create(url=url, defaults=defaults)
        (added if created else existing).append(feed)
    return added, existing, refused
