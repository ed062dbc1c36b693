"""The corpus run (`manage.py ingestcorpus FOLDER`, `make corpus`) on small folders made here.

The real corpus (../shared/corpus, 174 files) is run by `make corpus`, not by the test suite.
"""

import gzip
import json

import pytest
from django.core.management import CommandError, call_command

from bench.corpus import unsafe_markup
from feeds.models import Entry, Feed
from tests.feedserver import rss

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("allow_private")]

JSON_FEED = {
    "version": "https://jsonfeed.org/version/1.1",
    "title": "J",
    "items": [{"id": "1", "content_html": "<p onmouseover='x()'>Hi<script>bad()</script></p>"}],
}


@pytest.fixture
def corpus(tmp_path):
    (tmp_path / "README.md").write_text("not a feed file")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "news.rss").write_text(rss(("a", "A"), ("b", "B")))
    (tmp_path / "site" / "zipped.xml.gz").write_bytes(gzip.compress(rss(("z", "Z")).encode()))
    (tmp_path / "site" / "feed.json").write_text(json.dumps(JSON_FEED))
    (tmp_path / "site" / "page.html").write_text("<!DOCTYPE html><html><body>Hello</body></html>")
    return tmp_path


def test_it_ingests_every_file_and_prints_entries_errors_and_totals(corpus, capsys):
    call_command("ingestcorpus", str(corpus))

    out = capsys.readouterr().out
    lines = {line.split()[1]: line for line in out.splitlines() if line.startswith(("ok ", "FAIL"))}
    assert set(lines) == {"site/feed.json", "site/news.rss", "site/page.html", "site/zipped.xml.gz"}
    assert " 2 entries" in lines["site/news.rss"]
    assert " 1 entries" in lines["site/zipped.xml.gz"]  # sent with Content-Encoding: gzip
    assert " 1 entries" in lines["site/feed.json"]
    assert "error: not a feed: this is an HTML page" in lines["site/page.html"]
    assert "4 files in" in out
    assert "4 entries stored from 3 files; 1 files with an error" in out
    assert "JSON Feeds: 1 of 1 ingested; HTML pages: 1 of 1 rejected" in out
    assert "all acceptance checks passed" in out
    assert Feed.objects.count() == Entry.objects.count() == 0  # it cleans up after itself


def test_a_failed_check_fails_the_run(corpus, capsys):
    empty_json_feed = {**JSON_FEED, "items": [{}]}  # a JSON Feed that yields no entry
    (corpus / "site" / "feed.json").write_text(json.dumps(empty_json_feed))

    with pytest.raises(CommandError, match="1 file"):
        call_command("ingestcorpus", str(corpus))

    assert "! a JSON Feed with no entries stored" in capsys.readouterr().out


def test_it_refuses_to_run_with_the_guard_on(corpus, settings):
    settings.FEEDS_ALLOW_PRIVATE_NETWORKS = False

    with pytest.raises(CommandError, match="FEEDS_ALLOW_PRIVATE_NETWORKS"):
        call_command("ingestcorpus", str(corpus))


@pytest.mark.parametrize(
    ("fragment", "problem"),
    [
        ("<p>fine <a href='https://example.com/'>x</a> <a href='mailto:a@b.c'>m</a></p>", ""),
        ("<p>Hi<script>alert(1)</script></p>", "a script element"),
        ("<img src=x onerror=alert(1)>", "an event handler attribute (onerror)"),
        ("<a href=' jav&#x09;ascript:alert(1)'>x</a>", "a javascript: URL in href"),
        ("<p>Prose about javascript: is fine</p>", ""),
    ],
)
def test_unsafe_markup_is_found(fragment, problem):
    assert unsafe_markup(fragment) == problem
