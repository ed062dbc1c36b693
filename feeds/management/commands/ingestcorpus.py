"""Ingest a folder of real-world feed files through the real pipeline, and check what was stored."""

import csv
import gzip
import io
import json
import mimetypes
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import feedparser
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from feeds.ingest import fetch_and_store_many
from feeds.models import Entry, Feed
from feeds.parsing import MAX_ENTRIES, decode

SKIPPED_NAMES = {"README.md", "MANIFEST.tsv", "SOURCE_LICENSE.txt"}
URL_ATTRIBUTES = {"href", "src", "action", "formaction", "srcset", "poster", "background", "xlink:href"}
SAFE_SCHEMES = ("http:", "https:", "mailto:")


class Command(BaseCommand):
    help = (
        "Serve a folder of feed files on 127.0.0.1, ingest each one through the real pipeline "
        "(Feed rows + fetch_and_store), print what was stored, and fail if an acceptance check fails."
    )

    def add_arguments(self, parser):
        parser.add_argument("folder", type=Path)
        parser.add_argument("--keep", action="store_true", help="Keep the feeds and entries it created.")

    def handle(self, *args, folder: Path, keep=False, **options):
        folder = folder.resolve()
        if not folder.is_dir():
            raise CommandError(f"no such folder: {folder}")
        if not settings.FEEDS_ALLOW_PRIVATE_NETWORKS:
            raise CommandError("the files are served from 127.0.0.1: set FEEDS_ALLOW_PRIVATE_NETWORKS=true")
        files = corpus_files(folder)
        if not files:
            raise CommandError(f"no feed files in {folder}")
        server = CorpusServer(folder, [f.name for f in files])
        started = time.monotonic()
        try:
            results = self.ingest(server, files, keep)
        finally:
            server.stop()
        self.report(results, time.monotonic() - started)

    def ingest(self, server: "CorpusServer", files: list["CorpusFile"], keep: bool) -> list["Result"]:
        # Disabled: a beat running on this database never fetches them; fetch_and_store does.
        feeds = [Feed.objects.create(url=server.url(f.name), enabled=False) for f in files]
        try:
            outcomes = {}
            batch = getattr(settings, "FEEDS_BATCH_SIZE", 20)
            for start in range(0, len(feeds), batch):
                outcomes.update(fetch_and_store_many([feed.pk for feed in feeds[start : start + batch]]))
            results = []
            for corpus_file, feed in zip(files, feeds, strict=True):
                feed.refresh_from_db()
                summaries = list(Entry.objects.filter(feed=feed).values_list("summary_html", flat=True))
                result = Result(corpus_file, str(outcomes[feed.pk]), feed.last_error, len(summaries))
                result.check(summaries)
                results.append(result)
            return results
        finally:
            if not keep:
                Feed.objects.filter(pk__in=[feed.pk for feed in feeds]).delete()

    def report(self, results: list["Result"], seconds: float) -> None:
        width = max(len(r.file.name) for r in results)
        for r in results:
            status = "FAIL" if r.failures else "ok"
            line = f"{status:4} {r.file.name:{width}} {r.entries:4d} entries"
            if r.error:
                line += f"  error: {r.error[:160]}"
            self.stdout.write(line)
            for failure in r.failures:
                self.stdout.write(f"     ! {failure}")
        failed = [r for r in results if r.failures]
        errors = Counter(r.error.split(":")[0].split(" (")[0] for r in results if r.error)
        json_feeds = [r for r in results if r.file.is_json_feed]
        html_pages = [r for r in results if r.file.is_html_page]
        self.stdout.write("")
        self.stdout.write(
            f"{len(results)} files in {seconds:.1f} s: {sum(r.entries for r in results)} entries stored from "
            f"{sum(1 for r in results if r.entries)} files; {sum(errors.values())} files with an error"
        )
        self.stdout.write(f"  errors by kind: {dict(errors.most_common())}")
        self.stdout.write(
            f"  JSON Feeds: {sum(1 for r in json_feeds if r.entries)} of {len(json_feeds)} ingested; "
            f"HTML pages: {sum(1 for r in html_pages if r.error.startswith('not a feed'))} of "
            f"{len(html_pages)} rejected; files below feedparser's distinct identities: "
            f"{sum(1 for r in results if r.entries < r.file.expected_identities)}"
        )
        if failed:
            raise CommandError(f"{len(failed)} file(s) failed an acceptance check")
        self.stdout.write("all acceptance checks passed")


@dataclass
class CorpusFile:
    name: str  # path relative to the folder, with "/"
    content: bytes  # as a client sees it: gzip files decoded
    notes: str = ""
    is_json_feed: bool = False
    is_html_page: bool = False
    expected_identities: int = 0


def corpus_files(folder: Path) -> list[CorpusFile]:
    manifest = {}
    if (folder / "MANIFEST.tsv").is_file():
        with open(folder / "MANIFEST.tsv", newline="", encoding="utf-8") as rows:
            manifest = {row["file"]: row for row in csv.DictReader(rows, delimiter="\t")}
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in SKIPPED_NAMES):
        name = path.relative_to(folder).as_posix()
        if name.startswith(".") or "/." in name:
            continue
        row = manifest.get(name, {})
        content = path.read_bytes()
        if name.endswith(".gz"):
            content = gzip.decompress(content)
        corpus_file = CorpusFile(name, content, row.get("notes", ""))
        corpus_file.is_json_feed = row.get("format") == "jsonfeed" or _looks_like_json_feed(content)
        corpus_file.is_html_page = row.get("notes", "").startswith("NOT A FEED") or _looks_like_html(content)
        corpus_file.expected_identities = _feedparser_identities(content)
        files.append(corpus_file)
    return files


def _looks_like_json_feed(content: bytes) -> bool:
    try:
        doc = json.loads(decode(content), strict=False)
    except ValueError:
        return False
    return isinstance(doc, dict) and str(doc.get("version", "")).startswith(
        ("https://jsonfeed.org/version/", "http://jsonfeed.org/version/")
    )


def _looks_like_html(content: bytes) -> bool:
    head = decode(content[:4096]).lower()
    return bool(re.search(r"<(?:!doctype html|html)\b", head)) and not re.search(
        r"<(?:rss|feed|rdf:rdf)\b", head
    )


def _feedparser_identities(content: bytes) -> int:
    """How many distinct identities feedparser sees (id, else link, else title and content); entries
    that carry none of these are nothing to show and are not counted."""
    # A file object: feedparser 6.0 would open a str, or bytes, as a URL or a path.
    result = feedparser.parse(io.BytesIO(content), sanitize_html=False, resolve_relative_uris=False)
    identities = set()
    for raw in result.get("entries", [])[:MAX_ENTRIES]:
        body = raw.get("summary", "") or "".join(c.get("value", "") for c in raw.get("content", []))
        identity = (
            raw.get("id")
            or raw.get("link")
            or (f"{raw.get('title', '')}\n{body}" if raw.get("title") or body else "")
        )
        if identity.strip():
            identities.add(identity)
    return len(identities)


@dataclass
class Result:
    file: CorpusFile
    outcome: str
    error: str
    entries: int
    failures: list[str] = field(default_factory=list)

    def check(self, summaries: list[str]) -> None:
        if "internal error" in self.outcome or "internal error" in self.error:
            self.failures.append(f"crashed: {self.error}")
        if self.file.is_json_feed and not self.entries:
            self.failures.append("a JSON Feed with no entries stored")
        if self.file.is_html_page and not (self.error.startswith("not a feed") and not self.entries):
            self.failures.append("an HTML page that was not rejected as 'not a feed'")
        if self.entries < self.file.expected_identities:
            self.failures.append(
                f"{self.entries} entries stored, fewer than the {self.file.expected_identities} "
                "distinct identities feedparser reads"
            )
        for summary in summaries:
            problem = unsafe_markup(summary)
            if problem:
                self.failures.append(f"unsafe summary: {problem}")
                break


class _Audit(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self.problems.append("a script element")
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(f"an event handler attribute ({name})")
            elif name in URL_ATTRIBUTES and value:
                url = re.sub(r"[\x00-\x20]", "", value).lower()
                if ":" in url.split("/")[0] and not url.startswith(SAFE_SCHEMES):
                    self.problems.append(f"a {url.split(':')[0]}: URL in {name}")

    handle_startendtag = handle_starttag


def unsafe_markup(fragment: str) -> str:
    """The first script element, event-handler attribute or non-http(s)/mailto URL in a fragment, or ""."""
    audit = _Audit()
    audit.feed(fragment)
    audit.close()
    if "<script" in fragment.lower():
        audit.problems.append("a script element")
    return audit.problems[0] if audit.problems else ""


class CorpusServer:
    """Serves the corpus files on 127.0.0.1 (an OS-chosen port); a .gz file goes out as gzip bytes with
    Content-Encoding: gzip, as a web server would send a compressed feed."""

    def __init__(self, folder: Path, names: list[str]):
        files = {name: folder / name for name in names}

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                name = unquote(urlsplit(self.path).path).lstrip("/")
                path = files.get(name)  # only the listed files: no path ever reaches the file system
                if path is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = path.read_bytes()
                self.send_response(200)
                if name.endswith(".gz"):
                    self.send_header("Content-Encoding", "gzip")
                    name = name[:-3]
                kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{quote(name)}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
