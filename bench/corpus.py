"""The corpus run's files, server and audit (`manage.py ingestcorpus FOLDER`, `make corpus`).

Kept out of the app: the command is a thin entry point over this, and nothing at run time needs it.
"""

import csv
import gzip
import io
import json
import mimetypes
import re
import threading
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import feedparser

from feeds.parsing import MAX_ENTRIES, decode

SKIPPED_NAMES = {"README.md", "MANIFEST.tsv", "SOURCE_LICENSE.txt"}
URL_ATTRIBUTES = {"href", "src", "action", "formaction", "srcset", "poster", "background", "xlink:href"}
SAFE_SCHEMES = ("http:", "https:", "mailto:")


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
