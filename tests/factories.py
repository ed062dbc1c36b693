import hashlib
from datetime import UTC, datetime

from feeds.parsing import ParsedEntry, ParsedFeed


def item(guid: str, title: str | None = None, summary: str = "", published=None) -> ParsedEntry:
    return ParsedEntry(
        key=hashlib.sha256(guid.encode()).hexdigest(),
        guid=guid,
        link=f"https://example.com/{guid}",
        title=title or f"Title {guid}",
        summary_html=summary or f"<p>About {guid}</p>",
        author="",
        published=published or datetime(2026, 1, 1, tzinfo=UTC),
        updated=None,
    )


def document(*items: ParsedEntry, title: str = "A feed") -> ParsedFeed:
    return ParsedFeed(title=title, site_url="https://example.com/", entries=list(items))
