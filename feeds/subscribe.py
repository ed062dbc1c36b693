"""Adding feeds: by URL (with discovery from a web page), and from an OPML file's list.

Every URL passes the fetch guard first: nobody can point Livelog at its own network.
"""

from django.conf import settings

from feeds.fetching import BlockedAddress, FetchError, check_url, fetch
from feeds.models import Feed
from feeds.parsing import NotAFeed, ParseError, parse

MAX_URL = Feed._meta.get_field("url").max_length


def find_feed(url: str) -> tuple[str, str]:
    """The feed URL to register for `url`, and the page it was found on if `url` is a web page.

    The URL must pass the guard (BlockedAddress/FetchError otherwise). It is then fetched once: a web
    page that advertises feeds (<link rel="alternate">) gives its first feed instead, and one that
    advertises none is refused (NotAFeed). A URL that cannot be fetched right now is taken as given:
    the feed will show its error.
    """
    url = check_url(url)
    try:
        response = fetch(url)
    except BlockedAddress:
        raise  # it redirects somewhere we may not go: every fetch would fail
    except FetchError:
        return url, ""
    try:
        parse(response.content, url=response.url, content_type=response.headers.get("content-type", ""))
    except NotAFeed as exc:
        if not exc.feed_links:
            raise
        return check_url(exc.feed_links[0]), url
    except ParseError:
        pass  # a feed with a problem: registered, and its error shows on the feed
    return url, ""


def add_feed(url: str, interval: int | None = None) -> tuple[Feed, bool, str]:
    """Register the feed at `url` (see find_feed); returns (feed, created, the page it was found on or "")."""
    url, page = find_feed(url)
    feed, created = Feed.objects.get_or_create(
        url=url, defaults={"interval": interval or settings.FEEDS_DEFAULT_INTERVAL}
    )
    return feed, created, page


def import_feeds(
    entries: list[tuple[str, str]], interval: int | None = None
) -> tuple[list[Feed], list[Feed], list[tuple[str, str]]]:
    """Add every (url, title) of `feeds.opml.feed_urls` that the fetch guard accepts.

    `interval` (seconds, 5 or more) applies to the new feeds; FEEDS_DEFAULT_INTERVAL without it.
    Returns (added feeds, feeds already present, (url, reason) refused), each in document order.
    Not fetched here: an OPML file may list hundreds of feeds; each shows its own errors.
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
