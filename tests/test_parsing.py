"""feeds.parsing: bytes in, entries out. Pure functions, no database."""

import codecs
import csv
import gzip
import hashlib
import json
import re
import time
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import feedparser
import pytest

from feeds.parsing import (
    ALLOWED_TAGS,
    MAX_AUTHOR,
    MAX_ENTRIES,
    MAX_SUMMARY,
    MAX_TITLE,
    NotAFeed,
    ParseError,
    discover_feed_links,
    parse,
    sanitize_html,
)

URL = "https://example.com/blog/feed.xml"
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def parse_doc(doc: str | bytes, **kwargs):
    content = doc.encode("utf-8") if isinstance(doc, str) else doc
    kwargs.setdefault("url", URL)
    kwargs.setdefault("now", NOW)
    return parse(content, **kwargs)


def rss(items: str, channel: str = "<title>Channel</title><link>https://example.com/</link>") -> str:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>{channel}{items}</channel></rss>'
    )


def json_feed(items: list, version: str = "https://jsonfeed.org/version/1.1", **feed) -> bytes:
    return json.dumps({"version": version, "title": "J", "items": items, **feed}).encode()


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class MarkupAudit(HTMLParser):
    """Every tag and attribute of a fragment, as a browser's tokenizer sees them."""

    def __init__(self, fragment: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.feed(fragment)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {name: value or "" for name, value in attrs}))

    handle_startendtag = handle_starttag


def assert_inert(fragment: str) -> None:
    """Only allowlisted tags and attributes, no event handlers, only http(s)/mailto URLs."""
    assert "<script" not in fragment.lower()
    for tag, attrs in MarkupAudit(fragment).tags:
        assert tag in ALLOWED_TAGS, fragment
        assert set(attrs) <= {"href", "src", "alt", "rel", "loading", "referrerpolicy"}, fragment
        for name, value in attrs.items():
            assert not name.startswith("on"), fragment
            if name in ("href", "src"):
                assert re.match(r"(https?://|mailto:)", value), fragment


# Formats


def test_it_reads_rss_2_0():
    feed = parse_doc(
        rss(
            """<item><title>First post</title><link>https://example.com/1</link>
            <guid isPermaLink="false">post-1</guid><author>ed@example.com (Ed Itor)</author>
            <description>&lt;p&gt;Hello &lt;em&gt;world&lt;/em&gt;&lt;/p&gt;</description>
            <pubDate>Tue, 14 May 2024 10:00:00 +0200</pubDate></item>"""
        )
    )
    assert (feed.title, feed.site_url) == ("Channel", "https://example.com/")
    [entry] = feed.entries
    assert entry.guid == "post-1"
    assert entry.key == sha256("post-1")
    assert entry.link == "https://example.com/1"
    assert entry.title == "First post"
    assert entry.summary_html == "<p>Hello <em>world</em></p>"
    assert entry.author == "Ed Itor"
    assert entry.published == datetime(2024, 5, 14, 8, 0, tzinfo=UTC)
    assert entry.updated == entry.published


def test_it_reads_rss_1_0():
    doc = """<?xml version="1.0"?>
    <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/"
             xmlns:dc="http://purl.org/dc/elements/1.1/">
      <channel rdf:about="https://example.com/"><title>RDF site</title><link>https://example.com/</link></channel>
      <item rdf:about="https://example.com/a"><title>A</title><link>https://example.com/a</link>
        <description>About A</description><dc:date>2024-05-01T10:00:00Z</dc:date><dc:creator>Ann</dc:creator>
      </item>
    </rdf:RDF>"""
    feed = parse_doc(doc)
    assert feed.title == "RDF site"
    [entry] = feed.entries
    assert (entry.guid, entry.link, entry.title, entry.author) == (
        "https://example.com/a",
        "https://example.com/a",
        "A",
        "Ann",
    )
    assert entry.summary_html == "About A"
    assert entry.published == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def test_it_reads_rss_0_91():
    doc = """<rss version="0.91"><channel><title>Old</title><link>https://example.com/</link>
    <item><title>Item</title><link>https://example.com/i</link><description>D</description></item>
    </channel></rss>"""
    [entry] = parse_doc(doc).entries
    assert (entry.guid, entry.link, entry.key) == (
        "",
        "https://example.com/i",
        sha256("https://example.com/i"),
    )


def test_it_reads_atom_1_0():
    doc = """<?xml version="1.0" encoding="utf-8"?>
    <feed xmlns="http://www.w3.org/2005/Atom"><title>Atom site</title>
      <link rel="alternate" href="https://example.com/"/><link rel="self" href="https://example.com/feed"/>
      <author><name>Feed Author</name></author>
      <entry><id>urn:uuid:1</id><title type="html">Tom &amp;amp; Jerry &lt;b&gt;live&lt;/b&gt;</title>
        <link rel="alternate" href="https://example.com/tj"/>
        <published>2024-05-01T10:00:00+02:00</published><updated>2024-05-02T10:00:00Z</updated>
        <summary>Short</summary>
        <content type="html">&lt;p&gt;Full &lt;strong&gt;text&lt;/strong&gt;&lt;/p&gt;</content>
      </entry>
      <entry><id>urn:uuid:2</id><title>Second</title><author><name>Own Author</name></author>
        <updated>2024-05-03T00:00:00Z</updated><content type="xhtml">
        <div xmlns="http://www.w3.org/1999/xhtml"><p>X<br/>HTML</p></div></content></entry>
    </feed>"""
    feed = parse_doc(doc)
    assert (feed.title, feed.site_url) == ("Atom site", "https://example.com/")
    second, first = feed.entries  # newest first, by date
    assert first.guid == "urn:uuid:1"
    assert first.title == "Tom & Jerry live"
    assert first.summary_html == "<p>Full <strong>text</strong></p>"  # the content, not the summary
    assert first.author == "Feed Author"  # inherited from the feed
    assert first.published == datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    assert first.updated == datetime(2024, 5, 2, 10, 0, tzinfo=UTC)
    assert second.author == "Own Author"
    assert second.summary_html == "<p>X<br>HTML</p>"
    # Atom requires only <updated>: it stands in for the missing <published>.
    assert second.published == second.updated == datetime(2024, 5, 3, tzinfo=UTC)


def test_it_reads_atom_0_3():
    doc = """<?xml version="1.0"?>
    <feed version="0.3" xmlns="http://purl.org/atom/ns#"><title>Old Atom</title>
      <link rel="alternate" type="text/html" href="https://example.com/"/>
      <entry><title>Entry</title><link rel="alternate" type="text/html" href="https://example.com/e"/>
        <id>tag:example.com,2004:1</id><issued>2004-01-01T10:00:00Z</issued>
        <modified>2004-01-02T10:00:00Z</modified>
        <content type="text/html" mode="escaped">&lt;p&gt;Body&lt;/p&gt;</content></entry>
    </feed>"""
    feed = parse_doc(doc)
    assert (feed.title, feed.site_url) == ("Old Atom", "https://example.com/")
    [entry] = feed.entries
    assert (entry.guid, entry.link, entry.title) == (
        "tag:example.com,2004:1",
        "https://example.com/e",
        "Entry",
    )
    assert entry.summary_html == "<p>Body</p>"
    assert entry.published == datetime(2004, 1, 1, 10, 0, tzinfo=UTC)
    assert entry.updated == datetime(2004, 1, 2, 10, 0, tzinfo=UTC)


def test_it_reads_json_feed_1_1():
    doc = json_feed(
        [
            {
                "id": "1",
                "url": "https://example.com/1",
                "title": "One &amp; only",
                "content_html": "<p>Hi <a href='/about'>me</a></p><script>x()</script>",
                "date_published": "2024-05-01T10:00:00+02:00",
                "date_modified": "2024-05-02T10:00:00Z",
                "authors": [{"name": "Ann"}, {"name": "Bob"}],
            },
            {"id": "2", "external_url": "https://elsewhere.example/2", "content_text": "plain"},
        ],
        home_page_url="https://example.com/",
        authors=[{"name": "Feed Author"}],
    )
    feed = parse_doc(doc, content_type="application/feed+json")
    assert (feed.title, feed.site_url) == ("J", "https://example.com/")
    first, second = feed.entries
    assert (first.key, first.guid, first.link) == (sha256("1"), "1", "https://example.com/1")
    assert first.title == "One & only"
    assert first.summary_html == (
        '<p>Hi <a href="https://example.com/about" rel="noopener noreferrer nofollow">me</a></p>'
    )
    assert first.author == "Ann, Bob"
    assert first.published == datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    assert first.updated == datetime(2024, 5, 2, 10, 0, tzinfo=UTC)
    assert second.link == "https://elsewhere.example/2"
    assert second.author == "Feed Author"
    assert (second.published, second.updated) == (None, None)


def test_it_reads_json_feed_1_0():
    doc = json_feed(
        [
            {
                "id": 42,
                "url": "https://example.com/42",
                "title": "<b>not markup</b>",
                "content_text": "<script>alert(1)</script> & more\n\nsecond paragraph",
                "date_published": "2024-05-01T10:00:00Z",
                "author": {"name": "Old Style"},
            },
            {"id": "s", "summary": "only a summary", "date_published": "Wed, 01 May 2024 10:00:00 GMT"},
        ],
        version="https://jsonfeed.org/version/1",
    )
    first, second = parse_doc(doc).entries
    assert first.guid == "42"
    assert first.title == "<b>not markup</b>"  # JSON Feed titles are plain text
    assert (
        first.summary_html == "<p>&lt;script&gt;alert(1)&lt;/script&gt; &amp; more</p><p>second paragraph</p>"
    )
    assert first.author == "Old Style"
    assert first.published == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert second.summary_html == "<p>only a summary</p>"
    assert second.published == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)  # RFC 822 tolerated


def test_format_is_sniffed_from_the_bytes_not_the_content_type():
    atom = '<feed xmlns="http://www.w3.org/2005/Atom"><entry><id>a</id><title>A</title></entry></feed>'
    assert parse_doc(atom, content_type="application/json").entries[0].title == "A"
    as_xml = parse_doc(json_feed([{"id": "j", "title": "J1"}]), content_type="text/xml")
    assert as_xml.entries[0].title == "J1"


# Links


def test_relative_links_resolve_against_the_feed_url():
    feed = parse_doc(
        rss(
            """<item><guid>g</guid><link>posts/1</link>
            <description>&lt;a href="../about"&gt;a&lt;/a&gt;&lt;img src="/img/x.png"&gt;</description>
            </item>""",
            channel="<title>T</title><link>/</link>",
        )
    )
    assert feed.site_url == "https://example.com/"
    [entry] = feed.entries
    assert entry.link == "https://example.com/blog/posts/1"
    assert 'href="https://example.com/about"' in entry.summary_html
    assert 'src="https://example.com/img/x.png"' in entry.summary_html


def test_xml_base_applies_to_links_and_content():
    doc = """<feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://cdn.example.org/site/">
      <link href="home"/>
      <entry xml:base="posts/"><id>e1</id><link href="one.html"/>
        <content type="html" xml:base="https://media.example.net/m/">&lt;img src="pic.png"&gt;</content>
      </entry>
      <entry><id>e2</id><link href="two.html"/>
        <summary type="html">&lt;a href="x"&gt;x&lt;/a&gt;</summary></entry>
    </feed>"""
    feed = parse_doc(doc)
    assert feed.site_url == "https://cdn.example.org/site/home"
    one, two = feed.entries
    assert one.link == "https://cdn.example.org/site/posts/one.html"
    assert 'src="https://media.example.net/m/pic.png"' in one.summary_html
    assert two.link == "https://cdn.example.org/site/two.html"
    assert 'href="https://cdn.example.org/site/x"' in two.summary_html


@pytest.mark.parametrize(
    "link",
    [
        "javascript:alert(1)",
        " JaVaScRiPt:alert(1)",
        "java\nscript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "ftp://example.com/file",
        "mailto:someone@example.com",
        "http://",
    ],
)
def test_entry_and_feed_links_must_be_http(link):
    feed = parse_doc(
        rss(f"<item><guid>g</guid><title>T</title><link>{link}</link></item>", channel=f"<link>{link}</link>")
    )
    assert feed.site_url == ""
    assert feed.entries[0].link == ""


def test_an_overlong_link_is_dropped_not_cut():
    long_link = "https://example.com/" + "a" * 3000
    [entry] = parse_doc(rss(f"<item><guid>g</guid><link>{long_link}</link></item>")).entries
    assert entry.link == ""


# Identity and duplicates


def test_an_entry_without_id_is_known_by_its_link():
    [entry] = parse_doc(rss("<item><title>T</title><link>https://example.com/p</link></item>")).entries
    assert entry.guid == ""
    assert entry.key == sha256("https://example.com/p")


def test_an_entry_without_id_or_link_is_known_by_its_title_and_content():
    doc = rss("<item><title>T</title><description>Body</description></item>")
    [entry] = parse_doc(doc).entries
    [again] = parse_doc(doc).entries
    [edited] = parse_doc(doc.replace("Body", "Body, edited")).entries
    assert entry.key == again.key
    assert entry.key != edited.key
    assert entry.key == sha256("T\nBody")


def test_a_repeated_entry_keeps_its_first_occurrence():
    item = "<item><guid>same</guid><title>T</title><link>https://example.com/t</link>{date}</item>"
    doc = rss(
        item.format(date="<pubDate>Mon, 06 May 2024 10:00:00 GMT</pubDate>")
        + "<item><guid>other</guid><title>O</title></item>"
        + item.format(date="<pubDate>Tue, 07 May 2024 10:00:00 GMT</pubDate>")
    )
    entries = parse_doc(doc).entries
    assert [e.guid for e in entries] == ["same", "other"]
    assert entries[0].published == datetime(2024, 5, 6, 10, 0, tzinfo=UTC)
    assert entries[0].key == sha256("same")


def test_items_sharing_one_id_stay_distinct_and_true_duplicates_collapse():
    def item(n):
        return f"<item><guid>https://example.com/</guid><title>Post {n}</title><link>https://example.com/{n}</link></item>"

    entries = parse_doc(rss(item(1) + item(2) + item(3) + item(2))).entries
    assert [e.title for e in entries] == ["Post 1", "Post 2", "Post 3"]
    assert len({e.key for e in entries}) == 3
    assert all(e.guid == "https://example.com/" for e in entries)
    # The longer identity does not depend on position: a new item on top changes no other key.
    newer = parse_doc(rss(item(4) + item(1) + item(2) + item(3))).entries
    assert [e.key for e in newer[1:]] == [e.key for e in entries]


def test_items_sharing_id_and_link_are_told_apart_by_their_content():
    def item(title):
        return f"<item><guid>g</guid><link>https://example.com/</link><title>{title}</title></item>"

    entries = parse_doc(rss(item("A") + item("B") + item("A"))).entries
    assert [e.title for e in entries] == ["A", "B"]
    assert entries[0].key != entries[1].key


def test_json_items_sharing_an_id_stay_distinct():
    items = [{"id": "x", "url": f"https://example.com/{n}", "content_text": str(n)} for n in (1, 2)]
    entries = parse_doc(json_feed(items + items[:1])).entries
    assert [e.link for e in entries] == ["https://example.com/1", "https://example.com/2"]


def test_empty_items_are_dropped():
    feed = parse_doc(
        rss("<item></item><item><title></title><link></link></item><item><title>Kept</title></item>")
    )
    assert [e.title for e in feed.entries] == ["Kept"]


# Hostile content


@pytest.mark.parametrize(
    ("payload", "forbidden"),
    [
        ("<p>ok</p><script>alert(1)</script>", "alert"),
        ('<img src="https://example.com/x.png" onerror="alert(1)">', "onerror"),
        ('<a href="javascript:alert(1)">x</a>', "javascript"),
        ('<a href="jav&#x09;ascript:alert(1)">x</a>', "script:"),
        ('<svg onload="alert(1)"><circle r="1"/></svg>', "svg"),
        ('<noscript><p title="</noscript><img src=x onerror=alert(1)>">', "onerror"),
        ("<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>", "onerror"),
        ('<iframe src="https://evil.example/"></iframe>', "iframe"),
        ('<p style="position:fixed" class="x" onclick="alert(1)">p</p>', "style"),
        ('<img src="data:image/svg+xml;base64,PHN2Zz4=">', "data:"),
        ('<form action="https://evil.example/"><input name="q"></form>', "form"),
        ('<a href="vbscript:msgbox(1)">v</a>', "vbscript"),
        ("<object data='https://evil.example/x.swf'></object><embed src='x'>", "object"),
    ],
)
def test_hostile_markup_is_neutralised(payload, forbidden):
    html = sanitize_html(payload, "https://example.com/")
    assert_inert(html)
    assert forbidden not in html.lower()
    # Through the whole parser too, as an RSS description.
    [entry] = parse_doc(
        rss(f"<item><guid>g</guid><description><![CDATA[{payload}]]></description></item>")
    ).entries
    assert_inert(entry.summary_html)
    assert forbidden not in entry.summary_html.lower()


def test_sanitized_html_is_stable():
    # Re-sanitizing changes nothing: what we store is what a browser will parse.
    once = sanitize_html('<noscript><p title="</noscript><img src=x onerror=alert(1)>">', "https://e.com/")
    assert sanitize_html(once, "https://e.com/") == once


def test_links_in_content_get_rel_and_allowlisted_markup_survives():
    html = sanitize_html(
        '<h2>H</h2><blockquote><p><a href="https://x.example/">x</a> <code>c</code></p></blockquote>'
        '<figure><img src="https://x.example/i.png" alt="i"><figcaption>cap</figcaption></figure>'
        '<ul><li><b>b</b></li></ul><a href="mailto:me@example.com">mail</a>'
    )
    assert '<a href="https://x.example/" rel="noopener noreferrer nofollow">x</a>' in html
    assert '<a href="mailto:me@example.com" rel="noopener noreferrer nofollow">mail</a>' in html
    for tag in ("h2", "blockquote", "code", "figure", "img", "figcaption", "ul", "li", "b"):
        assert f"<{tag}" in html


def test_relative_urls_are_dropped_when_there_is_no_base():
    html = sanitize_html('<a href="/x">x</a><img src="y.png">')
    assert "href" not in html
    assert "src" not in html


def test_content_declared_as_text_is_escaped_not_trusted():
    doc = """<feed xmlns="http://www.w3.org/2005/Atom"><entry><id>t</id>
      <title type="text">&lt;script&gt;alert(1)&lt;/script&gt;</title>
      <summary type="text">&lt;img src=x onerror=alert(1)&gt; &amp;amp; line
two</summary></entry></feed>"""
    [entry] = parse_doc(doc).entries
    assert entry.title == "<script>alert(1)</script>"  # literal text, escaped at render time
    assert entry.summary_html == "<p>&lt;img src=x onerror=alert(1)&gt; &amp;amp; line<br>two</p>"
    assert MarkupAudit(entry.summary_html).tags == [("p", {}), ("br", {})]


def test_html_titles_become_plain_text():
    doc = rss(
        "<item><guid>1</guid><title>&lt;b&gt;Bold&lt;/b&gt; &amp;amp; &lt;i&gt;more&lt;/i&gt;</title></item>"
        "<item><guid>2</guid><title>&lt;script&gt;alert(1)&lt;/script&gt;</title></item>"
        "<item><guid>3</guid><title><![CDATA[Caf&eacute; <em>ok</em>]]></title></item>"
    )
    assert [e.title for e in parse_doc(doc).entries] == [
        "Bold & more",
        "<script>alert(1)</script>",  # not HTML by feedparser's rules: literal text
        "Café ok",
    ]


def test_nul_and_other_forbidden_characters_are_stripped():
    doc = json.dumps(
        {
            "version": "https://jsonfeed.org/version/1.1",
            "title": "F\u0000eed",
            "items": [
                {
                    "id": "i\u0000d",
                    "title": "a\u0000b\u0007c\ud800d\ufffe",
                    "content_html": "<p>x\u0000y\u001fz</p>",
                    "authors": [{"name": "A\u0000nn"}],
                }
            ],
        }
    ).encode()
    feed = parse_doc(doc)
    [entry] = feed.entries
    assert feed.title == "Feed"
    assert (entry.guid, entry.title, entry.summary_html, entry.author) == ("id", "abcd", "<p>xyz</p>", "Ann")
    xml = rss("<item><guid>g&#0;1</guid><title>t\x01i\x00tle</title><description>d\x0bd</description></item>")
    [entry] = parse_doc(xml).entries
    assert (entry.title, entry.summary_html) == ("title", "dd")
    assert "\x00" not in entry.guid


# Dates


def test_future_dates_are_clamped_to_now():
    doc = rss("<item><guid>f</guid><pubDate>Fri, 01 Jan 2100 00:00:00 GMT</pubDate></item>")
    [entry] = parse_doc(doc).entries
    assert entry.published == NOW
    assert entry.updated == NOW
    [json_entry] = parse_doc(json_feed([{"id": "f", "date_published": "2100-01-01T00:00:00Z"}])).entries
    assert json_entry.published == NOW


def test_missing_or_unreadable_dates_are_none():
    doc = rss("<item><guid>a</guid></item><item><guid>b</guid><pubDate>someday soon</pubDate></item>")
    for entry in parse_doc(doc).entries:
        assert (entry.published, entry.updated) == (None, None)
    [json_entry] = parse_doc(json_feed([{"id": "x", "date_published": "not a date"}])).entries
    assert json_entry.published is None


def test_dates_are_aware_utc():
    doc = json_feed(
        [
            {"id": "n", "date_published": "2024-05-01T10:00:00"},
            {"id": "z", "date_modified": "2024-05-01T10:00:00-05:00"},
        ]
    )
    offset, naive = parse_doc(doc).entries  # newest first
    assert naive.published == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert offset.updated == datetime(2024, 5, 1, 15, 0, tzinfo=UTC)
    assert offset.updated.utcoffset().total_seconds() == 0


# Not a feed


def test_an_html_page_is_not_a_feed_and_names_the_feeds_it_links_to():
    page = b"""<!DOCTYPE html><html><head><base href="https://example.com/blog/">
      <link rel="stylesheet" type="text/css" href="/style.css">
      <link rel="alternate" type="application/rss+xml" title="RSS" href="feed.xml">
      <link rel="Alternate" type="application/atom+xml; charset=utf-8" href="https://example.com/atom">
      <link rel="alternate" type="application/feed+json" href="/feed.json">
      <link rel="alternate" type="application/json" href="/feed.json">
      <link rel="alternate" type="application/rss+xml" href="javascript:alert(1)">
      <link rel="alternate" type="text/html" href="/fr/">
    </head><body><p>Hello</p></body></html>"""
    with pytest.raises(NotAFeed) as caught:
        parse_doc(page, url="https://example.com/")
    assert str(caught.value).startswith("not a feed: this is an HTML page")
    expected = [
        "https://example.com/blog/feed.xml",
        "https://example.com/atom",
        "https://example.com/feed.json",
    ]
    assert caught.value.feed_links == expected
    assert discover_feed_links(page, "https://example.com/") == expected


def test_an_html_page_without_feed_links_says_so():
    with pytest.raises(NotAFeed) as caught:
        parse_doc(b"<head><title>Moved</title></head><body>gone</body>")
    assert caught.value.feed_links == []
    assert "not a feed" in str(caught.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"  \n ", "empty"),
        (b"Hello, world", "neither XML nor JSON"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "neither XML nor JSON"),
        (gzip.compress(b"<rss/>"), "gzip"),
        (b'{"hello": "world"}', "not a JSON Feed"),
        (b"[1, 2, 3]", "not a JSON Feed"),
        (b'{"version": "https://jsonfeed.org/version/1", "items": ', "invalid JSON"),
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": {}}', "items"),
        (b"<opml version='2.0'><head/><body/></opml>", "<opml>"),
        (b"<rss version='2.0'><channel><title>cut off", "malformed"),
        (b"<?xml version='1.0'?><rss><!DOCTYPE x [<!ENTITY", "malformed"),
    ],
)
def test_anything_else_is_a_parse_error_with_a_clear_message(content, message):
    with pytest.raises(ParseError) as caught:
        parse_doc(content)
    assert not isinstance(caught.value, NotAFeed)
    assert message in str(caught.value)


def test_a_malformed_feed_that_still_has_entries_is_accepted():
    doc = rss(
        "<item><guid>1</guid><title>One</title></item><item><guid>2</guid><title>Two &amp </title></item>"
    )
    feed = parse_doc(doc.replace("</channel></rss>", "<item><title>broken</b></item>"))
    assert [e.title for e in feed.entries][:2] == ["One", "Two &"]


def test_a_body_that_looks_like_a_path_or_url_is_not_opened(tmp_path):
    secret = tmp_path / "secret.xml"
    secret.write_text(rss("<item><guid>leak</guid><title>SECRET</title></item>"))
    for content in (str(secret).encode(), f"file://{secret}".encode(), b"https://example.com/feed.xml"):
        with pytest.raises(ParseError):
            parse_doc(content)


def test_feedparser_never_opens_anything(monkeypatch):
    # feedparser.parse opens a str as a URL or a path, and bytes as a path too: we run its parsers
    # on the document ourselves and never call it.
    def refuse(*args, **kwargs):
        raise AssertionError("feedparser.parse was called")

    monkeypatch.setattr(feedparser, "parse", refuse)
    monkeypatch.setattr(feedparser.api, "_open_resource", refuse)
    assert parse_doc(rss("<item><guid>1</guid></item>")).entries[0].guid == "1"
    assert parse_doc(rss("<item><guid>1</guid></item>") + "<broken").entries[0].guid == "1"


# Encodings


def test_a_latin_1_feed_is_readable():
    doc = rss("<item><guid>1</guid><title>Crème brûlée à São Paulo</title></item>").replace(
        "utf-8", "iso-8859-1"
    )
    [entry] = parse_doc(doc.encode("latin-1")).entries
    assert entry.title == "Crème brûlée à São Paulo"


def test_latin_1_declared_means_windows_1252_as_in_browsers():
    doc = rss("<item><guid>1</guid><title>“quoted” – dash</title></item>").replace("utf-8", "ISO-8859-1")
    [entry] = parse_doc(doc.encode("cp1252")).entries
    assert entry.title == "“quoted” – dash"


@pytest.mark.parametrize("encoding", ["windows-1251", "koi8-r"])
def test_a_declared_cyrillic_feed_is_readable(encoding):
    doc = rss("<item><guid>1</guid><title>Новости Оренбурга</title></item>").replace("utf-8", encoding)
    [entry] = parse_doc(doc.encode(encoding)).entries
    assert entry.title == "Новости Оренбурга"


def test_an_undeclared_latin_1_feed_is_guessed():
    title = "Les modèles européens : très complexe, déjà vu à côté"
    doc = rss(f"<item><guid>1</guid><title>{title}</title><description>{title * 5}</description></item>")
    [entry] = parse_doc(doc.replace(' encoding="utf-8"', "").encode("latin-1")).entries
    assert entry.title == title


def test_utf_8_wins_over_a_wrong_declaration():
    doc = rss("<item><guid>1</guid><title>Grüße</title></item>").replace("utf-8", "windows-1251")
    [entry] = parse_doc(doc.encode("utf-8"), content_type="text/xml; charset=iso-8859-1").entries
    assert entry.title == "Grüße"


def test_the_content_type_charset_is_used_when_the_document_is_silent():
    doc = rss("<item><guid>1</guid><title>Привет</title></item>").replace(' encoding="utf-8"', "")
    [entry] = parse_doc(doc.encode("koi8-r"), content_type="application/rss+xml; charset=KOI8-R").entries
    assert entry.title == "Привет"


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be", "utf-16"])
def test_an_undeclared_utf_16_json_feed_is_readable(codec):
    doc = json_feed([{"id": "1", "title": "Ünïcödé ✓"}]).decode()
    [entry] = parse_doc(doc.encode(codec)).entries  # "utf-16" writes a BOM, the others none
    assert entry.title == "Ünïcödé ✓"


def test_a_utf_16_xml_feed_with_bom_is_readable():
    doc = rss("<item><guid>1</guid><title>Ελληνικά</title></item>").replace("utf-8", "utf-16")
    [entry] = parse_doc(codecs.BOM_UTF16_LE + doc.encode("utf-16-le")).entries
    assert entry.title == "Ελληνικά"


def test_whitespace_and_junk_before_the_xml_declaration_are_tolerated():
    doc = rss("<item><guid>1</guid><title>T</title></item>")
    assert parse_doc("\n\n  " + doc).entries[0].title == "T"
    assert parse_doc("<br />Warning: something in x.php<br />" + doc).entries[0].title == "T"


# XML safety


LAUGHS = "".join(f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">' for n in range(1, 10))


@pytest.mark.parametrize(
    "doctype",
    [
        # One declaration a line: feedparser's own regex removes these.
        "<!DOCTYPE rss [\n"
        + LAUGHS.replace("><", ">\n<").replace("<!ENTITY lol1", '<!ENTITY lol0 "lol">\n<!ENTITY lol1')
        + "\n]>",
        # All on one line, with a "<b" that ends feedparser's scan early: only our guard stops it.
        f'<!DOCTYPE rss [<!ENTITY a "<b>"><!ENTITY lol0 "lol">{LAUGHS}]>',
        # Parameter entities.
        f"<!DOCTYPE rss [<!ENTITY % p \"<!ENTITY lol0 'lol'>\"> %p; {LAUGHS}]>",
    ],
)
def test_billion_laughs_is_not_expanded(doctype):
    body = "<title>&lol9;</title><item><guid>g</guid><title>&lol9;</title><description>&lol9;</description>"
    doc = f'<?xml version="1.0"?>\n{doctype}<rss version="2.0"><channel>{body}</item></channel></rss>'
    started = time.monotonic()
    try:
        feed = parse_doc(doc)
    except ParseError:
        feed = None
    assert time.monotonic() - started < 0.5
    if feed is not None:
        everything = feed.title + "".join(e.title + e.summary_html for e in feed.entries)
        assert len(everything) < 1000
        assert "lollol" not in everything


@pytest.mark.parametrize(
    "doctype",
    [
        '<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file://{path}">]>',
        '<!DOCTYPE rss [\n<!ENTITY xxe SYSTEM "file://{path}">\n]>',
        '<!DOCTYPE rss [<!ENTITY a "<b>"><!ENTITY xxe SYSTEM "file://{path}">]>',
        '<!DOCTYPE rss [<!ENTITY % ext SYSTEM "file://{path}"> %ext;]>',
        '<!DOCTYPE rss SYSTEM "file://{path}">',
    ],
)
def test_external_entities_are_not_read(tmp_path, doctype):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET-MARKER")
    doc = (
        '<?xml version="1.0"?>\n'
        + doctype.format(path=secret)
        + '<rss version="2.0"><channel><title>t &xxe;</title><item><guid>g</guid><title>x &xxe;</title>'
        + "<description>&xxe;</description></item></channel></rss>"
    )
    started = time.monotonic()
    try:
        outcome = repr(parse_doc(doc))
    except ParseError as error:
        outcome = str(error)
    assert "TOPSECRET" not in outcome
    assert time.monotonic() - started < 0.5


def test_short_literal_entities_still_work():
    doc = rss("<item><guid>g</guid><title>a&nbsp;b&copy2;</title></item>").replace(
        "<rss", '<!DOCTYPE rss [<!ENTITY nbsp "&#160;"><!ENTITY copy2 "(c)">]><rss'
    )
    assert parse_doc(doc).entries[0].title == "a b(c)"


# Caps


def test_fields_are_capped():
    items = [
        {
            "id": "big",
            "title": "t" * (MAX_TITLE + 500),
            "content_html": "<p>" + '<a href="https://example.com/">link</a> ' * 20_000 + "</p>",
            "authors": [{"name": "a" * (MAX_AUTHOR + 100)}],
        },
        {"id": "text", "content_text": "&<>" * 60_000},
    ]
    html_entry, text_entry = parse_doc(json_feed(items)).entries
    assert len(html_entry.title) == MAX_TITLE
    assert len(html_entry.author) == MAX_AUTHOR
    for entry in (html_entry, text_entry):
        assert MAX_SUMMARY * 0.8 < len(entry.summary_html) <= MAX_SUMMARY
        # Cut before sanitizing: the output is still well-formed markup.
        assert entry.summary_html.endswith("</p>")
        assert sanitize_html(entry.summary_html, "https://example.com/") == entry.summary_html


def test_only_the_first_entries_of_a_document_are_read():
    items = "".join(f"<item><guid>{n}</guid><title>{n}</title></item>" for n in range(MAX_ENTRIES + 50))
    entries = parse_doc(rss(items)).entries
    assert len(entries) == MAX_ENTRIES
    assert (entries[0].title, entries[-1].title) == ("0", str(MAX_ENTRIES - 1))


# The corpus of real-world feeds beside the checkout (never copied into the repository)


def corpus_rows() -> list[dict]:
    if not (CORPUS / "MANIFEST.tsv").is_file():
        return []
    with open(CORPUS / "MANIFEST.tsv", newline="", encoding="utf-8") as manifest:
        return list(csv.DictReader(manifest, delimiter="\t"))


# Files where feedparser counted entries that carry nothing at all (no id, link, title or
# content): nested or empty <item/>s, an item cut off mid-CDATA. We drop those.
EMPTY_ENTRIES = {
    "danmactough_node-feedparser/illegally-nested.xml": 10,
    "miniflux_v2/no_encoding_ISO-8859-1.xml": 1,
    "rbren_rss-parser/incomplete-fields.atom": 1,
    "kurtmckee_feedparser/rss_incomplete_cdata.xml": 1,
}


def expected_identities(row: dict) -> int:
    """The fewest distinct identities the manifest allows: entries sharing an id may be one."""
    entries, shared = int(row["entries"]), int(row["entries_with_shared_id"])
    distinct = entries - shared + (1 if shared else 0) - EMPTY_ENTRIES.get(row["file"], 0)
    return min(distinct, MAX_ENTRIES)


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"no corpus at {CORPUS}")
@pytest.mark.parametrize("row", corpus_rows(), ids=lambda row: row["file"])
def test_corpus_file(row):
    content = (CORPUS / row["file"]).read_bytes()
    if row["file"].endswith(".gz"):
        content = gzip.decompress(content)  # served with Content-Encoding: gzip
    url = f"http://127.0.0.1:8000/{row['file']}"
    if row["notes"].startswith("NOT A FEED"):
        with pytest.raises(NotAFeed):
            parse(content, url=url)
        return
    try:
        feed = parse(content, url=url)
    except ParseError:
        assert row["format"] != "jsonfeed"
        return
    if row["format"] == "jsonfeed":
        assert feed.entries
    assert len({e.key for e in feed.entries}) >= expected_identities(row)
    for entry in feed.entries:
        assert_inert(entry.summary_html)
        # In markup, that is: prose about JavaScript may well say "javascript:".
        assert not re.search(r"<[^>]*javascript:", entry.summary_html, re.IGNORECASE)
        assert entry.link == "" or entry.link.startswith(("http://", "https://"))
        assert entry.published is None or entry.published.tzinfo is not None
