"""OPML round trip, and hostile OPML refused by defusedxml."""

import io

import pytest
from django.core.management import CommandError, call_command

from feeds.models import Feed
from feeds.opml import OPMLError, export, feed_urls

pytestmark = pytest.mark.django_db


def test_export_then_import_into_an_empty_database_gives_the_same_feeds(tmp_path, allow_private):
    # Loopback URLs: this machine resolves no public names, and import checks each URL.
    Feed.objects.create(url="http://127.0.0.1:9/a.xml", title="A & B <news>", site_url="https://example.com/")
    Feed.objects.create(url="http://127.0.0.1:9/feed.json", title="")
    Feed.objects.create(url="http://localhost:9/local.xml", title="Local")
    before = sorted(Feed.objects.values_list("url", "title"))
    path = tmp_path / "feeds.opml"
    call_command("exportopml", "--output", str(path))
    Feed.objects.all().delete()
    out = io.StringIO()
    call_command("importopml", str(path), stdout=out)
    assert sorted(Feed.objects.values_list("url", "title")) == before
    assert "3 new of 3 feeds" in out.getvalue()
    call_command("importopml", str(path), stdout=io.StringIO())
    assert Feed.objects.count() == 3


def test_nested_folders_are_read_and_duplicates_dropped():
    content = b"""<?xml version="1.0"?><opml version="1.0"><body>
      <outline text="News"><outline text="One" xmlUrl="https://a.example/rss"/>
        <outline text="Deeper"><outline title="Two" xmlUrl="https://b.example/atom"/></outline></outline>
      <outline text="One again" xmlUrl="https://a.example/rss"/></body></opml>"""
    assert feed_urls(content) == [("https://a.example/rss", "One"), ("https://b.example/atom", "Two")]


@pytest.mark.parametrize(
    "content",
    [
        b'<?xml version="1.0"?><!DOCTYPE o [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
        b'<opml><body><outline xmlUrl="https://x.example/&b;"/></body></opml>',
        b'<?xml version="1.0"?><!DOCTYPE o [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<opml><body><outline xmlUrl="https://x.example/" text="&x;"/></body></opml>',
    ],
    ids=["billion-laughs", "external-entity"],
)
def test_hostile_xml_is_refused(content):
    with pytest.raises(OPMLError, match="forbidden XML"):
        feed_urls(content)


def test_not_opml_gets_a_clear_error(tmp_path):
    path = tmp_path / "x.opml"
    path.write_bytes(b"<rss><channel/></rss>")
    with pytest.raises(CommandError, match="not an OPML file"):
        call_command("importopml", str(path))


def test_private_addresses_in_opml_are_refused_by_the_guard(tmp_path, settings):
    settings.FEEDS_ALLOW_PRIVATE_NETWORKS = False
    path = tmp_path / "x.opml"
    path.write_bytes(b'<opml><body><outline xmlUrl="http://169.254.169.254/latest"/></body></opml>')
    err = io.StringIO()
    call_command("importopml", str(path), stdout=io.StringIO(), stderr=err)
    assert Feed.objects.count() == 0
    assert "refused" in err.getvalue()


def test_export_escapes_titles():
    Feed.objects.create(url="https://example.com/a.xml", title='"quoted" <b>&')
    assert b"&lt;b&gt;&amp;" in export()
