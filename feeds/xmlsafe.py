"""feedparser, run on our terms: no entity it could expand, and a deadline it cannot outrun.

We call feedparser's two parsers ourselves (what `feedparser.parse` does after fetching and
re-encoding, minus both, since the document is already UTF-8 text here), so that:

- The prolog is rewritten before any parser sees it. Whatever precedes the root element (an XML
  declaration, comments of any length, processing instructions, DOCTYPEs) is read by a linear scan;
  what is kept is a fresh XML declaration and the DOCTYPE's short literal entities (`&nbsp;` as
  `&#160;`), and nothing else: no external identifier, no parameter entity, no entity that refers
  to another. A DOCTYPE further on is not well-formed XML, and the fallback parser never expands one.
- expat (through defusedxml's SAX reader) refuses any entity declaration that is not such a short
  literal, in case one ever got past the scan: the document is refused, nothing is expanded.
- The deadline is checked for every 16 KB handed to expat and for every element, text, reference and
  declaration either parser reports, so a document that is cheap in bytes but costly to read (millions
  of tiny elements, say) stops at the deadline. No regular expression here backtracks more than linearly.
"""

import re
from collections.abc import Iterator
from xml.sax import SAXException

from defusedxml import EntitiesForbidden
from defusedxml.expatreader import DefusedExpatParser
from feedparser.api import LooseFeedParser, StrictFeedParser
from feedparser.html import _BaseHTMLProcessor
from feedparser.urls import make_safe_absolute_uri
from feedparser.util import FeedParserDict

from feeds.bounds import Deadline
from feeds.parsed import ParseError

XML_DECLARATION = '<?xml version="1.0" encoding="utf-8"?>\n'
# An entity that expands to a short literal: no references, so no amplification, no files.
SAFE_ENTITY = re.compile(
    r"""<!ENTITY\s+([\w.:-]+)\s+(?:"([^"&%<]{0,16})"|'([^'&%<]{0,16})'|"(&#x?[0-9a-fA-F]{1,6};)")\s*>"""
)
DOCTYPE = re.compile(r"<!DOCTYPE\b", re.IGNORECASE)
# Up to the "[" of an internal subset or the ">" that ends the DOCTYPE, quoted strings skipped.
DOCTYPE_HEAD = re.compile(r"""[^"'\[>]*(?:(?:"[^"]*"|'[^']*')[^"'\[>]*)*""")
DECLARATION = re.compile(r"""<![^>"']*(?:(?:"[^"]*"|'[^']*')[^>"']*)*>""")
SUBSET_END = re.compile(r"\]\s*>")
SPACE = re.compile(r"\s*")
# feedparser's loose parser escapes declarations it does not know, and expands <tag/>.
LOOSE_DECLARATION = re.compile(r"<!(?!DOCTYPE|--|\[)", re.IGNORECASE)
SHORT_TAG = re.compile(r"<([^<>\s]+?)\s*/>")
CHUNK = 16 * 1024
# The elements feedparser reads dates from (pubDate, dc:date, lastBuildDate, ... are pushed as these).
DATES = {"published", "updated", "created", "expired"}
MAX_DATE = 256


def read(text: str, url: str, deadline: Deadline) -> FeedParserDict:
    """feedparser's result for the document `text` (from its first markup) fetched from `url`."""
    doctype, entities, declarations, body = split_prolog(text, deadline)
    subset = "".join(f"{declaration}\n" for declaration in declarations)
    prolog = XML_DECLARATION + (f"<!DOCTYPE feed [\n{subset}]>\n" if subset else "")
    data = (prolog + body).encode("utf-8")
    base = make_safe_absolute_uri(url) or url
    result = FeedParserDict(bozo=False, entries=[], feed=FeedParserDict(), headers={})
    parser = _Strict(base, None, "utf-8")
    parser.start(deadline)
    reader = _ExpatReader(namespaceHandling=1)
    reader.setContentHandler(parser)
    reader.setErrorHandler(parser)
    try:
        reader.parse(_Chunks(data, deadline))
    except EntitiesForbidden as exc:
        raise ParseError(
            f"refused: the document declares an entity ({exc.name}) that is not a short literal"
        ) from None
    except SAXException as exc:
        # Not well-formed: the forgiving parser reads what it can, as feedparser.parse does.
        result.update(bozo=1, bozo_exception=parser.exc or exc)
        parser = _Loose(base, None, "utf-8", entities)
        parser.start(deadline)
        parser.feed(data.decode("utf-8"))
    result["feed"] = parser.feeddata
    result["entries"] = parser.entries
    result["version"] = ("rss091n" if "netscape" in doctype.lower() else None) or parser.version
    result["namespaces"] = parser.namespaces_in_use
    return result


def split_prolog(text: str, deadline: Deadline) -> tuple[str, dict[str, str], list[str], str]:
    """(the first DOCTYPE's text, its safe entities by name, their declarations, the rest from the root)."""
    doctype, entities, declarations = "", {}, []
    pos = 0
    while True:
        deadline.check()
        pos = SPACE.match(text, pos).end()
        if text.startswith("<?", pos):
            pos = _after(text, "?>", pos)
        elif text.startswith("<!--", pos):
            pos = _after(text, "-->", pos)
        elif DOCTYPE.match(text, pos):
            start = pos
            pos = _doctype(text, pos, entities, declarations, deadline)
            doctype = doctype or text[start : min(pos, start + 1024)]
        else:
            return doctype, entities, declarations, text[pos:]


def _after(text: str, marker: str, pos: int) -> int:
    end = text.find(marker, pos + 2)
    if end < 0:
        raise ParseError("not a feed: malformed XML (unterminated markup before the root element)")
    return end + len(marker)


def _doctype(text: str, pos: int, entities: dict, declarations: list, deadline: Deadline) -> int:
    """Where the DOCTYPE at `pos` ends; its safe entity declarations are added to the lists."""
    pos = DOCTYPE_HEAD.match(text, pos + len("<!DOCTYPE")).end()
    if text.startswith(">", pos):
        return pos + 1
    if not text.startswith("[", pos):
        raise ParseError("not a feed: malformed XML (unreadable DOCTYPE)")
    pos += 1
    while True:
        deadline.check()
        pos = SPACE.match(text, pos).end()
        if close := SUBSET_END.match(text, pos):
            return close.end()
        if text.startswith("<!--", pos) or text.startswith("<?", pos):
            pos = _after(text, "-->" if text.startswith("<!--", pos) else "?>", pos)
        elif declaration := DECLARATION.match(text, pos):
            if safe := SAFE_ENTITY.fullmatch(declaration[0]):
                name, *values = safe.groups()
                entities[name] = next(value for value in values if value is not None)
                declarations.append(declaration[0])
            pos = declaration.end()
        elif text.startswith("%", pos) and (end := text.find(";", pos, pos + 256)) > 0:
            pos = end + 1  # a parameter entity reference: dropped
        else:
            raise ParseError("not a feed: malformed XML (unreadable DOCTYPE)")


class _Chunks:
    """The document for expat, CHUNK bytes a read, the deadline checked before each."""

    def __init__(self, data: bytes, deadline: Deadline):
        self.data = memoryview(data)
        self.pos = 0
        self.deadline = deadline

    def read(self, size: int = -1) -> bytes:
        self.deadline.check()
        piece = self.data[self.pos : self.pos + (CHUNK if size < 0 else min(size, CHUNK))]
        self.pos += len(piece)
        return bytes(piece)

    def close(self) -> None:
        pass


class _ExpatReader(DefusedExpatParser):
    """defusedxml's SAX reader, allowing the one kind of entity the prolog scan keeps."""

    def reset(self):
        super().reset()
        # Text arrives in pieces of up to 8 KB, not one call per character reference.
        self._parser.buffer_text = True

    def defused_entity_decl(self, name, is_parameter_entity, value, base, sysid, pubid, notation_name):
        if is_parameter_entity or value is None or len(value) > 16 or "&" in value or "<" in value:
            raise EntitiesForbidden(name, value, base, sysid, pubid, notation_name)


class _Bounded:
    """For both feedparser parsers: the deadline checked as they report, and ids that invent no link.

    feedparser treats an RSS <guid> without isPermaLink, and every Atom <id>, as a permalink: "123"
    is resolved against the feed's URL and becomes the entry's link when it has none. Here only an
    id that is an http(s) URL can stand in for the link; one that is not stays as it was written
    (an RSS guid) or as feedparser has always keyed it (an Atom id), and gives no link.
    """

    deadline: Deadline
    _guid_is_url: bool | None = None

    def start(self, deadline: Deadline) -> None:
        self.deadline = deadline
        self.resolve_relative_uris = False  # we resolve URLs ourselves, from each field's xml:base
        self.sanitize_html = False  # and sanitize with nh3

    def unknown_starttag(self, tag, attrs):
        self.deadline.check()
        return super().unknown_starttag(tag, attrs)

    def unknown_endtag(self, tag):
        self.deadline.check()
        return super().unknown_endtag(tag)

    def handle_data(self, text, *args, **kwargs):
        self.deadline.check()
        return super().handle_data(text, *args, **kwargs)

    def handle_entityref(self, ref):
        self.deadline.check()
        return super().handle_entityref(ref)

    def handle_charref(self, ref):
        self.deadline.check()
        return super().handle_charref(ref)

    def parse_declaration(self, i):
        self.deadline.check()
        return super().parse_declaration(i)

    def pop(self, element, strip_whitespace=1):
        # feedparser runs a dozen date formats' expressions over a date's text: a megabyte-long
        # <pubDate> would cost seconds in one call. No real date is longer than this.
        if element in DATES and self.elementstack and self.elementstack[-1][0] == element:
            pieces = self.elementstack[-1][2]
            if sum(map(len, pieces)) > MAX_DATE:
                self.elementstack[-1][2] = [self._text()[:MAX_DATE]]
        return super().pop(element, strip_whitespace)

    def _start_guid(self, attrs_d):
        super()._start_guid(attrs_d)
        self._guid_is_url = "ispermalink" in attrs_d or None  # None: decided by its text

    def _start_id(self, attrs_d):
        super()._start_id(attrs_d)
        self._guid_is_url = False

    def _end_guid(self):
        if self._guid_is_url is None:
            self.guidislink = _is_http(self._text())
        return super()._end_guid()

    def _end_id(self):
        text = self._text()
        had_link = "link" in self._get_context()
        super()._end_id()
        if not _is_http(text) and not had_link:
            context = self._get_context()
            context.pop("link", None)
            context["guidislink"] = False

    def _start_link(self, attrs_d):
        # <link uri="at://…">https://…</link> (a real podcast feed): a URL attribute that is not
        # http(s) gives way to the element's text.
        for name in ("url", "uri", "href"):
            if name in attrs_d and not _is_http_or_relative(attrs_d[name]):
                del attrs_d[name]
        return super()._start_link(attrs_d)

    def _text(self) -> str:
        if not self.elementstack:
            return ""
        pieces = self.elementstack[-1][2]
        return "".join(p.decode("utf-8", "replace") if isinstance(p, bytes) else p for p in pieces)


class _Strict(_Bounded, StrictFeedParser):
    pass


class _Loose(_Bounded, LooseFeedParser):
    def feed(self, data: str) -> None:
        # _BaseHTMLProcessor.feed, with its substitutions made a piece at a time and the deadline
        # checked between pieces: on millions of "<!" or "<a/>" each takes seconds, in one call.
        # Pieces start at a "<", and no match contains one after its first character.
        out = []
        for start, end in pieces(data, CHUNK):
            self.deadline.check()
            piece = LOOSE_DECLARATION.sub("&lt;!", data[start:end])
            out.append(SHORT_TAG.sub(self._shorttag_replace, piece))
        data = "".join(out).replace("&#39;", "'").replace("&#34;", '"')
        super(_BaseHTMLProcessor, self).feed(data)
        super(_BaseHTMLProcessor, self).close()


def pieces(text: str, size: int) -> Iterator[tuple[int, int]]:
    """(start, end) of pieces of `text` of about `size` characters, each starting at a "<" (but the first)."""
    start = 0
    while start < len(text):
        end = text.find("<", start + size)
        end = len(text) if end < 0 else end
        yield start, end
        start = end


HTTP = re.compile(r"\s*(?:<!\[CDATA\[\s*)?https?://", re.IGNORECASE)
SCHEME = re.compile(r"\s*([A-Za-z][A-Za-z0-9+.-]*):")


def _is_http(text: str) -> bool:
    return bool(HTTP.match(text))


def _is_http_or_relative(url: str) -> bool:
    scheme = SCHEME.match(url)
    return scheme is None or scheme[1].lower() in ("http", "https")
