"""Turn the bytes of a feed document into entries. Pure: no models, no network, no database.

Formats are sniffed from the bytes, never from the file name or Content-Type: JSON Feed 1.0/1.1 is
read here by hand, RSS 0.9x/1.0/2.0 and Atom 0.3/1.0 by feedparser, an HTML page raises NotAFeed
(with the feeds it links to) and anything else raises ParseError.

Encoding: a BOM (or the zero bytes of UTF-16/32) wins; then bytes that are valid UTF-8 are UTF-8,
whatever they declare (publishers often declare Latin-1 and send UTF-8); then the XML declaration,
then the charset of the Content-Type, then a guess by charset-normalizer. feedparser always gets the
document re-encoded as UTF-8, so it never falls back to windows-1252 mojibake.

Identity: an entry is its id (RSS guid, Atom id, JSON Feed id), else its link, else the hash of its
title and content; `key` is the sha256 of that. Within one document:
- entries with the same identity that do not differ (same link, title and content) are one entry:
  the first in document order is kept, the later ones are dropped;
- entries that share an identity but differ (broken publishers give every item the same guid) all
  get a longer identity, the shared one plus their link (or, where the link does not tell them
  apart either, plus the hash of their title and content), so distinct items stay distinct.
The longer identity is stable while the publisher keeps sharing the id; an entry whose id only
becomes shared later gets a new key once (the store sees it as new).

An entry's body is its full content (content:encoded, atom:content, content_html) if it has one,
else its summary. Every string is plain text or sanitized HTML: a title declared as HTML has its tags
stripped and entities unescaped, one declared as text is kept literally (so render titles and authors
escaped); `summary_html` went through nh3 with a small allowlist, and content declared as text is
escaped, never trusted as markup. Characters PostgreSQL or XML refuse are removed; every field is capped.

XML safety: feedparser hands expat no external entities, and we remove the DOCTYPE's internal subset
before it gets there (see _drop_internal_subset), so no entity expansion or file read can happen.
"""

import codecs
import hashlib
import html
import io
import json
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import charset_normalizer
import feedparser
import nh3
from feedparser.datetimes import _parse_date as parse_loose_date

MAX_ENTRIES = 500
MAX_TITLE = 1000
MAX_FEED_TITLE = 500  # Feed.title is a CharField(500)
MAX_SUMMARY = 100_000
MAX_AUTHOR = 500
MAX_LINK = 2048
MAX_GUID = 2048

ALLOWED_TAGS = {
    "p", "br", "a", "em", "strong", "b", "i", "ul", "ol", "li", "blockquote", "code", "pre",
    "h1", "h2", "h3", "h4", "h5", "h6", "img", "figure", "figcaption",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"*": set(), "a": {"href"}, "img": {"src", "alt"}}  # "*": none of ammonia's lang, title
# Dropped with everything inside them, not just unwrapped: their content is code, not text.
DROPPED_WITH_CONTENT = {
    "script", "style", "noscript", "template", "iframe", "object", "embed", "svg", "math", "textarea",
}  # fmt: skip
URL_SCHEMES = {"http", "https", "mailto"}
LINK_REL = "noopener noreferrer nofollow"

FEED_LINK_TYPES = {"application/rss+xml", "application/atom+xml", "application/feed+json", "application/json"}
JSON_FEED_VERSIONS = ("https://jsonfeed.org/version/", "http://jsonfeed.org/version/")

# What PostgreSQL (NUL) or XML 1.0 (other C0 controls, lone surrogates, U+FFFE/U+FFFF) refuse.
BAD_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
XML_DECLARATION = re.compile(r"<\?xml[^>]*\?>")
XML_ENCODING = re.compile(rb"""^<\?xml[^>]{0,200}?encoding\s*=\s*["']([A-Za-z0-9._:-]+)["']""")
CONTENT_TYPE_CHARSET = re.compile(r"""charset\s*=\s*["']?([A-Za-z0-9._:-]+)""", re.IGNORECASE)
FEED_START = re.compile(r"<(?:\?xml|rss|feed|rdf:RDF)\b")
FEED_ROOT = re.compile(r"<(?:rss|feed|rdf:RDF)[\s>]")
# An entity that expands to a short literal: no references, so no amplification, no files.
SAFE_ENTITY = re.compile(
    r"""<!ENTITY\s+[\w.:-]+\s+(?:"[^"&%<]{0,16}"|'[^'&%<]{0,16}'|"&#x?[0-9a-fA-F]{1,6};")\s*>"""
)
ELEMENT_NAME = re.compile(r"<([A-Za-z_][\w.:-]*)")
NON_ASCII = re.compile(r"[^\x00-\x7f]")
# An RSS guid is a permalink unless it says otherwise, and feedparser resolves it against the feed
# URL ("123" -> "https://example.com/feed/123") and uses it as the link. One that is plainly not
# a URL is marked as not a permalink first, so the id stays as written and no link is invented.
NON_URL_GUID = re.compile(r"<guid(?=[\s/>])(?![^>]*isPermaLink)([^>]*)>(?!\s*(?:<!\[CDATA\[\s*)?https?://)")
XHTML_VOID_END = re.compile(r"</(?:area|br|col|embed|hr|img|input|source|track|wbr)\s*>")
HTML_ROOTS = {"html", "head", "body"}
BOMS = (
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
)


class ParseError(Exception):
    """str(e) is a clear human message stored on the feed."""


class NotAFeed(ParseError):
    """The document is a web page, not a feed; `feed_links` are the feeds it advertises."""

    def __init__(self, message: str, feed_links: list[str] | None = None):
        super().__init__(message)
        self.feed_links = feed_links or []


@dataclass
class ParsedEntry:
    key: str
    guid: str
    link: str
    title: str
    summary_html: str
    author: str
    published: datetime | None
    updated: datetime | None


@dataclass
class ParsedFeed:
    title: str
    site_url: str
    entries: list[ParsedEntry] = field(default_factory=list)
    # WebSub discovery: the hubs the document names (rel="hub", JSON Feed `hubs`) and its rel="self".
    hubs: list[str] = field(default_factory=list)
    self_url: str = ""


def parse(content: bytes, *, url: str, content_type: str = "", now: datetime | None = None) -> ParsedFeed:
    """Parse one feed document fetched from `url`. Raises ParseError (or NotAFeed) with a clear message."""
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    if not content.strip():
        raise ParseError("empty document: the server sent no content")
    text = clean(decode(content, content_type)).lstrip("\ufeff \t\r\n")
    if text.startswith(("{", "[")):
        return _parse_json(text, url, now)
    if not text.startswith("<"):
        start = FEED_START.search(text, 0, 1024)
        if start is None:
            hint = " (it looks like compressed gzip data)" if content[:2] == b"\x1f\x8b" else ""
            raise ParseError(f"not a feed: the document is neither XML nor JSON{hint}")
        text = text[start.start() :]  # junk before the feed, e.g. a PHP warning
    root, doctype = _root_element(text)
    if (root in HTML_ROOTS or doctype.startswith("html")) and not FEED_ROOT.search(text):
        raise _not_a_feed(text, url)
    return _parse_xml(text, url, root, now)


def discover_feed_links(content: bytes, url: str) -> list[str]:
    """The absolute URLs of the feeds an HTML page advertises with <link rel="alternate">."""
    return _find_feed_links(clean(decode(content, "")), url)


def sanitize_html(html: str, base_url: str = "") -> str:
    """Untrusted HTML -> HTML safe to insert in a page: small allowlist, http(s)/mailto URLs only."""
    base = http_url(base_url)
    return clean(_cleaner(base).clean(clean(html)))


# Decoding


def decode(content: bytes, content_type: str = "") -> str:
    """Bytes -> text, by BOM, UTF-8 validity, declared encoding, then a guess (see module docstring)."""
    for bom, encoding in BOMS:
        if content.startswith(bom):
            return content[len(bom) :].decode(encoding, "replace")
    # No BOM, but the zero bytes of UTF-16/32 around ASCII '<' or '{'.
    head = content[:4]
    if len(head) == 4:
        if head[:3] == b"\0\0\0" and head[3]:
            return content.decode("utf-32-be", "replace")
        if head[1:] == b"\0\0\0" and head[0]:
            return content.decode("utf-32-le", "replace")
        if head[0] == 0 and head[2] == 0 and head[1] and head[3]:
            return content.decode("utf-16-be", "replace")
        if head[1] == 0 and head[3] == 0 and head[0] and head[2]:
            return content.decode("utf-16-le", "replace")
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        pass
    declared = XML_ENCODING.match(content.lstrip())
    charset = CONTENT_TYPE_CHARSET.search(content_type or "")
    for label in (declared and declared[1].decode(), charset and charset[1]):
        for encoding in _codecs_for(label):
            try:
                return content.decode(encoding)
            except (UnicodeDecodeError, LookupError):
                continue
    best = charset_normalizer.from_bytes(content).best()
    if best is None:
        return content.decode("cp1252", "replace")
    guess = str(best)
    # Latin single-byte code pages are hard to tell apart, and the guess often lands on a Baltic or
    # Central European one for French or Portuguese. Take windows-1252, the browsers' default, when
    # the guess is Latin too and windows-1252 reads at least as many letters.
    try:
        western = content.decode("cp1252")
    except UnicodeDecodeError:
        return guess
    letters, latin = _letter_counts(guess)
    if latin * 2 > letters and _letter_counts(western)[0] >= letters:
        return western
    return guess


def _letter_counts(text: str) -> tuple[int, int]:
    """(non-ASCII letters, how many of them are Latin)."""
    letters = [c for c in NON_ASCII.findall(text) if c.isalpha()]
    return len(letters), sum(unicodedata.name(c, "").startswith("LATIN") for c in letters)


def _codecs_for(label: str | None) -> list[str]:
    if not label:
        return []
    try:
        name = codecs.lookup(label).name
    except LookupError:
        return []
    if name in ("utf-8", "utf-16", "utf-32"):
        return []  # already ruled out above
    if name in ("latin-1", "iso8859-1", "ascii"):
        return ["cp1252", "latin-1"]  # as browsers do: these labels mean windows-1252
    if name == "gb2312":
        return ["gb18030"]
    return [name]


def clean(value: str) -> str:
    return BAD_CHARS.sub("", value)


# XML feeds


def _root_element(text: str) -> tuple[str, str]:
    """The local name of the first element and the DOCTYPE's text, both lowercased."""
    doctype = ""
    pos = 0
    end = min(len(text), 65536)
    while (pos := text.find("<", pos, end)) >= 0:
        if text.startswith("<?", pos):
            pos = _after(text, "?>", pos, end)
        elif text.startswith("<!--", pos):
            pos = _after(text, "-->", pos, end)
        elif text.startswith("<!", pos):
            close = _after(text, ">", pos, end)
            if text[pos : pos + 9].upper() == "<!DOCTYPE":
                doctype = text[pos + 9 : close - 1].strip().lower()
            pos = close
        elif name := ELEMENT_NAME.match(text, pos):
            return name[1].rsplit(":", 1)[-1].lower(), doctype
        else:
            pos += 1
    return "", doctype


def _after(text: str, marker: str, pos: int, end: int) -> int:
    found = text.find(marker, pos, end)
    return found + len(marker) if found >= 0 else end


def _drop_internal_subset(text: str) -> str:
    """Remove the DOCTYPE's internal subset, keeping only short literal entities (e.g. nbsp).

    feedparser drops unsafe ENTITY declarations with a regex that a crafted DOCTYPE slips past
    (declarations on one line, a "<b" inside an entity value); expat then expands the entities
    until its amplification limit stops it, megabytes later. Here nothing of that reaches it.
    """
    start = re.search(r"<!DOCTYPE\b", text[:65536], re.IGNORECASE)
    if start is None or re.search(r"<[A-Za-z_]", text[: start.start()]):
        return text  # no DOCTYPE before the root element
    pos = start.end()
    quote = ""
    while pos < len(text) and (quote or text[pos] not in "[>"):
        if quote and text[pos] == quote:
            quote = ""
        elif not quote and text[pos] in "\"'":
            quote = text[pos]
        pos += 1
    if pos >= len(text) or text[pos] == ">":
        return text
    head, pos, kept = text[:pos].rstrip(), pos + 1, []
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if text.startswith("]", pos):
            close = re.compile(r"\]\s*>").match(text, pos)
            if close is None:
                break
            subset = f" [{''.join(kept)}]" if kept else ""
            return f"{head}{subset}>{text[close.end() :]}"
        if text.startswith("<!--", pos):
            end = text.find("-->", pos)
            pos = end + 3 if end >= 0 else len(text)
        elif text.startswith("<?", pos):
            end = text.find("?>", pos)
            pos = end + 2 if end >= 0 else len(text)
        elif text.startswith("<!", pos):
            declaration = re.compile(r"""<!(?:[^>"']|"[^"]*"|'[^']*')*>""").match(text, pos)
            if declaration is None:
                break
            if SAFE_ENTITY.fullmatch(declaration[0]):
                kept.append(declaration[0])
            pos = declaration.end()
        elif text.startswith("%", pos) and ";" in text[pos : pos + 256]:
            pos = text.index(";", pos) + 1  # a parameter entity reference: dropped
        else:
            break
    raise ParseError("not a feed: malformed XML (unreadable DOCTYPE)")


def _parse_xml(text: str, url: str, root: str, now: datetime) -> ParsedFeed:
    text = XML_DECLARATION.sub("", text, count=1) if text.startswith("<?xml") else text
    text = _drop_internal_subset(text)
    text = NON_URL_GUID.sub(r'<guid isPermaLink="false"\1>', text)
    data = ('<?xml version="1.0" encoding="utf-8"?>' + text).encode("utf-8")
    # A file-like object: feedparser opens a str as a URL or a path, and bytes as a path too.
    try:
        result = feedparser.parse(
            io.BytesIO(data),
            response_headers={"content-location": url, "content-type": "application/xml; charset=utf-8"},
            # We sanitize with nh3 and resolve URLs ourselves from each field's xml:base: feedparser's
            # own passes re-serialize the HTML with a different parser than the browser's.
            resolve_relative_uris=False,
            sanitize_html=False,
        )
    except Exception as exc:
        # Its fallback parser is old code fed hostile input: a crash is this feed's error, not ours.
        raise ParseError(f"not a feed: unreadable XML ({type(exc).__name__}: {exc})") from exc
    raw_entries = result.get("entries", [])
    if not result.get("version") and not raw_entries:
        if re.search(r"<html\b", text[:65536], re.IGNORECASE):
            raise _not_a_feed(text, url)
        if result.get("bozo"):
            raise ParseError(f"not a feed: malformed XML ({_describe(result.get('bozo_exception'))})")
        raise ParseError(f"not a feed: an XML document whose root element is <{root}>")
    if result.get("bozo") and not raw_entries:
        problem = _describe(result.get("bozo_exception"))
        raise ParseError(f"malformed feed with no readable entries ({problem})")

    info = result.get("feed", {})
    feed_author = _author(info)
    candidates = []
    for raw in raw_entries[:MAX_ENTRIES]:
        link = http_url(raw.get("link", ""), url)
        published = _struct_date(raw, "published", "updated", "created")
        updated = _struct_date(raw, "updated", "published", "created")
        entry = ParsedEntry(
            key="",
            guid=clean(raw.get("id", "") or "").strip(),
            link=link,
            title=_title(raw.get("title_detail"), raw.get("title", ""), MAX_TITLE),
            summary_html=_xml_summary(raw, link or url),
            author=_author(raw) or feed_author,
            published=_clamp(published, now),
            updated=_clamp(updated or published, now),
        )
        candidates.append(entry)
    links = [link for link in info.get("links", []) if isinstance(link, dict)]
    return ParsedFeed(
        title=_title(info.get("title_detail"), info.get("title", ""), MAX_FEED_TITLE),
        site_url=http_url(info.get("link", ""), url),
        entries=assign_keys(candidates),
        hubs=_urls((link.get("href", "") for link in links if link.get("rel") == "hub"), url),
        self_url=next(
            iter(_urls((link.get("href", "") for link in links if link.get("rel") == "self"), url)), ""
        ),
    )


def _xml_summary(raw, default_base: str) -> str:
    # The full content (content:encoded, atom:content) if any, else the summary (description).
    for detail in [*raw.get("content", []), raw.get("summary_detail")]:
        if detail and detail.get("value", "").strip():
            # `base` is the xml:base in effect for this very element.
            return _render_body(detail["value"], detail.get("type", ""), detail.get("base") or default_base)
    return ""


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    if hasattr(exc, "getLineNumber"):
        return f"{exc.getMessage()} at line {exc.getLineNumber()}, column {exc.getColumnNumber()}"
    return str(exc) or type(exc).__name__


def _title(detail, value: str, cap: int) -> str:
    kind = (detail or {}).get("type", "text/plain")
    text = value or ""
    if "html" in kind or "xml" in kind:
        text = html_to_text(text)
    return " ".join(clean(text).split())[:cap]


def _author(raw) -> str:
    detail = raw.get("author_detail") or {}
    name = detail.get("name") or raw.get("author") or ""
    return " ".join(clean(name).split())[:MAX_AUTHOR]


def _struct_date(raw, *names: str) -> datetime | None:
    for name in names:
        # dict.get: FeedParserDict.get("updated_parsed") answers with published_parsed, and warns.
        parsed = dict.get(raw, f"{name}_parsed")
        if parsed:
            try:
                return datetime(*parsed[:5], min(parsed[5], 59), tzinfo=UTC)
            except (TypeError, ValueError, OverflowError):
                continue
    return None


# JSON Feed


def _parse_json(text: str, url: str, now: datetime) -> ParsedFeed:
    try:
        doc = json.loads(text, strict=False)  # raw control characters in strings are common
    except (ValueError, RecursionError) as exc:
        raise ParseError(f"not a feed: invalid JSON ({exc})") from None
    version = doc.get("version") if isinstance(doc, dict) else None
    if not isinstance(version, str) or not version.startswith(JSON_FEED_VERSIONS):
        raise ParseError(
            "not a feed: JSON, but not a JSON Feed ('version' is not https://jsonfeed.org/version/…)"
        )
    items = doc.get("items")
    if not isinstance(items, list):
        raise ParseError("invalid JSON Feed: 'items' is missing or not a list")

    home = http_url(_str(doc.get("home_page_url")), url)
    feed_author = _json_author(doc)
    candidates = []
    for item in [item for item in items if isinstance(item, dict)][:MAX_ENTRIES]:
        link = http_url(_str(item.get("url")) or _str(item.get("external_url")), home or url)
        guid = item.get("id")
        guid = str(guid) if isinstance(guid, str | int | float) and not isinstance(guid, bool) else ""
        if _str(item.get("content_html")).strip():
            summary = _render_body(_str(item.get("content_html")), "text/html", link or home or url)
        else:
            body = _str(item.get("content_text")) or _str(item.get("summary"))
            summary = _render_body(body, "text/plain", "")
        published = _iso_date(item.get("date_published"))
        updated = _iso_date(item.get("date_modified"))
        candidates.append(
            ParsedEntry(
                key="",
                guid=clean(guid).strip(),
                link=link,
                title=_json_title(item.get("title"), MAX_TITLE),
                summary_html=summary,
                author=_json_author(item) or feed_author,
                published=_clamp(published or updated, now),
                updated=_clamp(updated or published, now),
            )
        )
    hubs = doc.get("hubs") if isinstance(doc.get("hubs"), list) else []
    return ParsedFeed(
        title=_json_title(doc.get("title"), MAX_FEED_TITLE),
        site_url=home,
        entries=assign_keys(candidates),
        # JSON Feed 1.1: hubs are {"type": "WebSub", "url": ...}; other types are other protocols.
        hubs=_urls(
            (
                _str(h.get("url"))
                for h in hubs
                if isinstance(h, dict) and _str(h.get("type")).lower() == "websub"
            ),
            url,
        ),
        self_url=http_url(_str(doc.get("feed_url")), url)[:MAX_LINK],
    )


def _str(value) -> str:
    return value if isinstance(value, str) else ""


def _json_title(value, cap: int) -> str:
    # Plain text by the spec, but WordPress writes entities ("&#8211;"): unescape, strip no tags.
    return " ".join(clean(html.unescape(_str(value))).split())[:cap]


def _json_author(obj: dict) -> str:
    authors = obj.get("authors")
    if not isinstance(authors, list):
        authors = [obj.get("author")]  # JSON Feed 1.0
    names = [_str(a.get("name")).strip() for a in authors if isinstance(a, dict)]
    return " ".join(clean(", ".join(n for n in names if n)).split())[:MAX_AUTHOR]


def _iso_date(value) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        # Not RFC 3339 (publishers write RFC 822 too): feedparser knows many date formats.
        loose = parse_loose_date(value)
        if not loose:
            return None
        try:
            return datetime(*loose[:5], min(loose[5], 59), tzinfo=UTC)
        except (TypeError, ValueError, OverflowError):
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


# Shared


def _clamp(value: datetime | None, now: datetime) -> datetime | None:
    # A date in the future would pin an entry above everything published after it.
    return min(value, now) if value is not None else None


def _urls(values, base: str, limit: int = 5) -> list[str]:
    """The distinct absolute http(s) URLs among `values`, at most `limit` of them."""
    urls = []
    for value in values:
        url = http_url(value if isinstance(value, str) else "", base)
        if url and len(url) <= MAX_LINK and url not in urls:
            urls.append(url)
    return urls[:limit]


def http_url(value: str, base: str = "") -> str:
    """`value` made absolute against `base` if it is an http(s) URL, else ""."""
    value = clean(value or "").strip()
    if not value:
        return ""
    try:
        parts = urlsplit(urljoin(base, value) if base else value)
    except ValueError:
        return ""
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return ""
    absolute = parts.geturl()
    return absolute if len(absolute) <= MAX_LINK else ""


def html_to_text(value: str) -> str:
    """Markup -> plain text: tags (and script/style contents) removed, entities unescaped."""
    return html.unescape(nh3.clean(value, tags=set(), attributes={}, link_rel=None))


def text_to_html(text: str) -> str:
    """Plain text -> HTML paragraphs, every character escaped."""
    paragraphs = re.split(r"\n\s*\n", text.replace("\r\n", "\n").replace("\r", "\n"))
    escaped = (html.escape(p.strip()).replace("\n", "<br>") for p in paragraphs if p.strip())
    return "".join(f"<p>{p}</p>" for p in escaped)


def _render_body(value: str, kind: str, base: str) -> str:
    kind = (kind or "text/html").lower()
    if "xhtml" in kind:
        # feedparser writes XHTML's <br/> as <br></br>, which HTML reads as two line breaks.
        value = XHTML_VOID_END.sub("", value)
    if "html" in kind or "xml" in kind:
        return _capped(lambda v: sanitize_html(v, base), value, MAX_SUMMARY)
    if kind.startswith("text"):
        return _capped(lambda v: text_to_html(clean(v)), value, MAX_SUMMARY)
    return ""  # e.g. base64 images as Atom content: nothing to show as text


def _capped(render, value: str, cap: int) -> str:
    # Cut the input, not the output, so the output is always well-formed; rendering can grow it
    # (escaping, rel attributes), so cut again until it fits.
    value = value[:cap]
    out = render(value)
    while len(out) > cap:
        value = value[: max(0, len(value) * cap // len(out) - 64)]
        out = render(value)
    return out


@lru_cache(maxsize=64)
def _cleaner(base: str) -> nh3.Cleaner:
    return nh3.Cleaner(
        tags=ALLOWED_TAGS,
        clean_content_tags=DROPPED_WITH_CONTENT,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel=LINK_REL,
        set_tag_attribute_values={"img": {"loading": "lazy", "referrerpolicy": "no-referrer"}},
        # A relative URL would point at our own site: resolve it, or drop it when there is no base.
        url_relative=("rewrite_with_base", base) if base else "deny",
    )


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def assign_keys(entries: list[ParsedEntry]) -> list[ParsedEntry]:
    """Give each entry its key and drop duplicates, by the rule in the module docstring."""
    groups: dict[str, list[ParsedEntry]] = {}
    for entry in entries:
        identity = entry.guid or entry.link or f"{entry.title}\n{entry.summary_html}"
        groups.setdefault(identity, []).append(entry)
    for identity, members in groups.items():
        distinct = list(dict.fromkeys((e.link, e.title, e.summary_html) for e in members))
        if len(distinct) == 1:
            for entry in members:
                entry.key = _sha256(identity)
            continue
        links = [link for link, _, _ in distinct]
        for entry in members:
            suffix = entry.link
            if not entry.link or links.count(entry.link) > 1:
                suffix += "\n" + _sha256(f"{entry.title}\n{entry.summary_html}")
            entry.key = _sha256(f"{identity}\n{suffix}")
    kept: dict[str, ParsedEntry] = {}
    for entry in entries:
        if not (entry.guid or entry.link or entry.title or entry.summary_html):
            continue  # nothing to show and nothing to know it by, e.g. a stray empty <item/>
        entry.guid = entry.guid[:MAX_GUID]
        kept.setdefault(entry.key, entry)  # first in document order wins
    return list(kept.values())


# HTML pages


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


def _find_feed_links(text: str, url: str) -> list[str]:
    finder = _FeedLinkFinder()
    finder.feed(text)
    finder.close()
    base = urljoin(url, finder.base) if finder.base else url
    links = (http_url(href, base) for href in finder.hrefs)
    return list(dict.fromkeys(link for link in links if link))


def _not_a_feed(text: str, url: str) -> NotAFeed:
    links = _find_feed_links(text, url)
    if links:
        hint = f"; it links to {len(links)} feed(s), e.g. {links[0]}"
    else:
        hint = "; it links to no feed either (check the feed's address)"
    return NotAFeed(f"not a feed: this is an HTML page{hint}", links)
