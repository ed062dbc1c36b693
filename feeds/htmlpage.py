"""Web pages given where a feed was expected: the feeds they advertise with <link rel="alternate">."""

from html.parser import HTMLParser
from urllib.parse import urljoin

from feeds.bounds import Deadline
from feeds.parsed import BAD_INPUT, NotAFeed
from feeds.sanitizing import http_url

FEED_LINK_TYPES = {"application/rss+xml", "application/atom+xml", "application/feed+json", "application/json"}
# A page is read this many characters at a time, the deadline checked in between, until its <body>,
# and no further than HEAD characters: feed links are in its <head>.
PIECE = 128 * 1024
HEAD = 1 << 20


class _FeedLinkFinder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.base = ""
        self.hrefs: list[str] = []
        self.done = False  # feeds are advertised in the <head>

    def handle_endtag(self, tag):
        self.done = self.done or tag == "head"

    def handle_starttag(self, tag, attrs):
        if tag == "body":
            self.done = True
        attrs = {name: value or "" for name, value in attrs}
        if tag == "base" and not self.base:
            self.base = attrs.get("href", "")
        elif tag == "link":
            rels = attrs.get("rel", "").lower().split()
            kind = attrs.get("type", "").split(";")[0].strip().lower()
            if "alternate" in rels and kind in FEED_LINK_TYPES and attrs.get("href"):
                self.hrefs.append(attrs["href"])


def find_feed_links(text: str, url: str, deadline: Deadline) -> list[str]:
    """The absolute URLs of the feeds the page `text` (fetched from `url`) advertises in its head."""
    finder = _FeedLinkFinder()
    for start in range(0, min(len(text), HEAD), PIECE):
        deadline.check()
        try:
            finder.feed(text[start : start + PIECE])
        except BAD_INPUT:
            break  # the standard library's parser gives up on some malformed markup: keep what it found
        if finder.done:
            break
    # No close(): older CPythons' parser is quadratic on a construct left open at the end (say 128 KB
    # of "<!--": 20 s), and what is left open is no <link> anyway.
    base = urljoin(url, finder.base) if finder.base else url
    links = (http_url(href, base) for href in finder.hrefs)
    return list(dict.fromkeys(link for link in links if link))


def not_a_feed(text: str, url: str, deadline: Deadline) -> NotAFeed:
    links = find_feed_links(text, url, deadline)
    if links:
        hint = f"; it links to {len(links)} feed(s), e.g. {links[0]}"
    else:
        hint = "; it links to no feed either (check the feed's address)"
    return NotAFeed(f"not a feed: this is an HTML page{hint}", links)
