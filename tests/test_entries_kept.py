"""Nothing lost without a word (issue 10, items 6 and 9): each case is the input that was observed,
stored as a reader would expect."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from feeds.parsing import MAX_ENTRIES, ParseError, parse

URL = "https://example.com/blog/feed.xml"
NOW = datetime(2026, 6, 1, tzinfo=UTC)
ATOM = '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>A</title>{}</feed>'


def parse_doc(doc: str | bytes):
    return parse(doc.encode() if isinstance(doc, str) else doc, url=URL, now=NOW)


def rss(items: str) -> str:
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>R</title>{items}</channel></rss>'


def json_feed(items: list, version: str = "https://jsonfeed.org/version/1.1") -> bytes:
    return json.dumps({"version": version, "title": "J", "items": items}).encode()


def dated_items(count: int) -> list[tuple[int, str]]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [(n, (start + timedelta(hours=n)).strftime("%a, %d %b %Y %H:%M:%S GMT")) for n in range(count)]


def test_a_feed_listing_its_items_oldest_first_keeps_its_newest():
    # Observed: 600 items oldest first kept the first 500, so its newest, and every later one, were lost.
    items = "".join(
        f"<item><guid>{n}</guid><title>Item {n}</title><pubDate>{date}</pubDate></item>"
        for n, date in dated_items(MAX_ENTRIES + 100)
    )

    entries = parse_doc(rss(items)).entries

    assert len(entries) == MAX_ENTRIES
    # The newest first, as the store expects (it numbers them oldest first, so the newest is on top).
    assert [e.guid for e in entries] == [str(n) for n in range(MAX_ENTRIES + 99, 99, -1)]


def test_a_feed_listing_its_items_newest_first_keeps_the_same_newest():
    items = "".join(
        f"<item><guid>{n}</guid><pubDate>{date}</pubDate></item>"
        for n, date in reversed(dated_items(MAX_ENTRIES + 100))
    )

    entries = parse_doc(rss(items)).entries

    assert [e.guid for e in entries] == [str(n) for n in range(MAX_ENTRIES + 99, 99, -1)]


def test_undated_items_keep_their_place_and_the_first_are_kept():
    items = "".join(f"<item><guid>{n}</guid><title>{n}</title></item>" for n in range(MAX_ENTRIES + 50))

    entries = parse_doc(rss(items)).entries

    assert [e.guid for e in entries] == [str(n) for n in range(MAX_ENTRIES)]


def test_a_json_feed_item_whose_date_overflows_costs_only_that_date():
    # Observed: OverflowError stopped the whole feed.
    items = [
        {"id": "bad", "title": "Dated at the edge", "date_published": "0001-01-01T00:00:00+14:00"},
        {"id": "good", "title": "Fine", "date_published": "2026-05-01T10:00:00Z"},
    ]

    entries = {e.guid: e for e in parse_doc(json_feed(items)).entries}

    assert entries["bad"].title == "Dated at the edge"
    assert entries["bad"].published is None
    assert entries["good"].published == datetime(2026, 5, 1, 10, tzinfo=UTC)


@pytest.mark.parametrize("version", ["1", "1.0", "1.1", "https://jsonfeed.org/version/1"])
def test_json_feed_versions_written_as_numbers_are_accepted(version):
    assert parse_doc(json_feed([{"id": "1", "title": "T"}], version=version)).entries[0].title == "T"


def test_a_json_file_with_another_version_is_still_not_a_json_feed():
    with pytest.raises(ParseError, match="not a JSON Feed"):
        parse_doc(json_feed([{"id": "1"}], version="2.0"))


@pytest.mark.parametrize(
    "content",
    [
        '<content type="html">&lt;iframe src="https://www.youtube.com/embed/x"&gt;&lt;/iframe&gt;</content>',
        '<content type="html">&lt;p&gt;&lt;script&gt;x()&lt;/script&gt;&lt;/p&gt;</content>',
        '<content type="image/png">iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk</content>',
    ],
    ids=["iframe-only embed", "script only", "binary"],
)
def test_an_atom_entry_whose_content_shows_nothing_keeps_its_summary(content):
    entry = f"<entry><id>urn:x:1</id><title>T</title>{content}<summary>What it is about</summary></entry>"

    [parsed] = parse_doc(ATOM.format(entry)).entries

    assert parsed.summary_html == "<p>What it is about</p>"


def test_an_atom_entry_with_content_that_shows_something_keeps_the_content():
    entry = (
        '<entry><id>urn:x:1</id><title>T</title><content type="html">&lt;img src="https://e.com/a.png"&gt;'
        "</content><summary>Short</summary></entry>"
    )

    [parsed] = parse_doc(ATOM.format(entry)).entries

    assert parsed.summary_html.startswith('<img src="https://e.com/a.png"')


def test_every_author_of_an_atom_entry_is_kept():
    entry = (
        "<entry><id>urn:x:1</id><title>T</title><author><name>Ada</name></author>"
        "<author><name>Grace</name></author><author><name>Ada</name></author></entry>"
    )

    [parsed] = parse_doc(ATOM.format(entry)).entries

    assert parsed.author == "Ada, Grace"


def test_every_dc_creator_of_an_rss_item_is_kept():
    doc = rss(
        "<item><guid>1</guid><dc:creator>Ada</dc:creator><dc:creator>Grace</dc:creator></item>"
    ).replace("<rss ", '<rss xmlns:dc="http://purl.org/dc/elements/1.1/" ')

    assert parse_doc(doc).entries[0].author == "Ada, Grace"


def test_a_link_whose_uri_attribute_is_not_http_keeps_its_https_text():
    # Observed in a real podcast feed (Bluesky posts): the at:// attribute won over the https text.
    item = (
        '<item><guid>1</guid><link uri="at://did:plc:abc/app.bsky.feed.post/1">'
        "https://bsky.app/profile/abc/post/1</link></item>"
    )

    assert parse_doc(rss(item)).entries[0].link == "https://bsky.app/profile/abc/post/1"


def test_an_atom_link_href_still_wins_and_relative_ones_resolve():
    entry = '<entry><id>urn:x:1</id><title>T</title><link rel="alternate" href="/posts/1"/></entry>'

    assert parse_doc(ATOM.format(entry)).entries[0].link == "https://example.com/posts/1"


@pytest.mark.parametrize("entry_id", ["123", "/posts/123", "tag:example.com,2026:1", "urn:uuid:1"])
def test_an_atom_id_that_is_not_a_url_invents_no_link(entry_id):
    # Observed: <id>123</id> became the link https://example.com/blog/123, a page that does not exist.
    [entry] = parse_doc(ATOM.format(f"<entry><id>{entry_id}</id><title>T</title></entry>")).entries

    assert entry.link == ""
    assert entry.guid  # still known by its id


def test_an_atom_id_that_is_a_url_stands_in_for_a_missing_link():
    [entry] = parse_doc(
        ATOM.format("<entry><id>https://example.com/p/1</id><title>T</title></entry>")
    ).entries

    assert entry.link == "https://example.com/p/1"


def test_rss_guids_that_are_not_urls_stay_as_written_and_invent_no_link():
    items = (
        "<item><guid>123</guid><title>A</title></item>"
        "<item><guid>https://example.com/p/2</guid><title>B</title></item>"
        '<item><guid isPermaLink="false">https://example.com/p/3</guid><title>C</title></item>'
    )

    entries = {e.title: e for e in parse_doc(rss(items)).entries}

    assert (entries["A"].guid, entries["A"].link) == ("123", "")
    assert (entries["B"].guid, entries["B"].link) == ("https://example.com/p/2", "https://example.com/p/2")
    assert entries["C"].link == ""


BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def test_bidi_controls_are_stripped_from_titles_authors_and_links():
    # Observed: they survived, and can make a title or a link read as something else.
    doc = json_feed(
        [
            {
                "id": "1",
                "title": f"Pay{BIDI}ment",
                "url": f"https://example.com/{BIDI}p",
                "authors": [{"name": f"An{BIDI}na"}],
                "content_text": "Marks \u200f\u200e stay",
            }
        ]
    ).replace(b'"title": "J"', f'"title": "Fe{BIDI}ed"'.encode())

    feed = parse_doc(doc)
    [entry] = feed.entries

    assert (feed.title, entry.title, entry.author) == ("Feed", "Payment", "Anna")
    assert entry.link == "https://example.com/p"
    assert "\u200f\u200e" in entry.summary_html  # direction marks reorder nothing: kept


def test_bidi_controls_are_stripped_from_xml_titles_too():
    doc = rss(f"<item><guid>1</guid><title>a{BIDI}b</title><author>x@e.com (Jo{BIDI}e)</author></item>")

    [entry] = parse_doc(doc).entries

    assert entry.title == "ab"
    assert BIDI[0] not in entry.author
