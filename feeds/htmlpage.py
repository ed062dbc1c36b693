"""Web pages given where a feed was expected: the feeds they advertise with <link rel="alternate">."""

from html.parser import HTMLParser
from urllib.parse import urljoin

from feeds.parsed import NotAFeed
from feeds.sanitizing import http_url

FEED_LINK_TYPES = {"application/rss+xml", "application/atom+xml", "application/feed+json", "application/json"}


class _FeedLinkFinder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.base = ""
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = {name: value or "" for name, value in attrs}
        if tag == "base" and not self.base:
            self.base = attrs.get("href", "")
        elif tag == "link":
            rels = attrs.get("rel", "").lower().split()
            kind = attrs.get("type", "").split(";")[0].strip().lower()
            if "alternate" in rels and kind in FEED_LINK_TYPES and attrs.get("href"):
                self.hrefs.append(attrs["href"])


def find_feed_links(text: str, url: str) -> list[str]:
    """The absolute URLs of the feeds the page `text` (fetched from `url`) advertises."""
    finder = _FeedLinkFinder()
    finder.feed(text)
    finder.close()
    base = urljoin(url, finder.base) if finder.base else url
    links = (http_url(href, base) for href in finder.hrefs)
    return list(dict.fromkeys(link for link in links if link))


def not_a_feed(text: str, url: str) -> NotAFeed:
    links = find_feed_links(text, url)
    if links:
        hint = f"; it links to {len(links)} feed(s), e.g. {links[0]}"
    else:
        hint = "; it links to no feed either (check the feed's address)"
    return NotAFeed(f"not a feed: this is an HTML page{hint}", links)
