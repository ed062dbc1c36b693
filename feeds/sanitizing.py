"""Untrusted text and HTML made safe to store and show: the one nh3 allowlist, and plain-text fields.

`cleaner()` is the only place an nh3 Cleaner is built: ingest (summaries, editors' posts) and the
templates (which sanitize again as they render) use it, so there is one allowlist. Every string
from a feed also loses the characters PostgreSQL or XML refuse; one-line fields (titles, authors)
and links also lose the bidi controls that could make them read as something else.
"""

import html
import re
from functools import lru_cache
from urllib.parse import urljoin, urlsplit

import nh3

MAX_LINK = 2048  # Entry.link and Feed.site_url

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

# What PostgreSQL (NUL) or XML 1.0 (other C0 controls, lone surrogates, U+FFFE/U+FFFF) refuse.
BAD_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# Embeddings, overrides and isolates (U+202A-202E, U+2066-2069): in a title, an author or a link they
# can reorder what a reader sees ("Trojan Source"). The marks U+200E/U+200F stay: they cannot.
BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")
XHTML_VOID_END = re.compile(r"</(?:area|br|col|embed|hr|img|input|source|track|wbr)\s*>")
# A character outside tags that is not white space (nh3's output is well-formed: no stray "<").
VISIBLE_TEXT = re.compile(r"(?:^|>)\s*[^<\s]")
# Regular expressions run over whole documents a piece at a time, so that none holds the GIL for long.
PIECE = 1 << 20


def _https_images(tag: str, attribute: str, value: str) -> str | None:
    # The page's policy loads images over https only (live.js drops the others too): an http
    # image would be blocked by the browser anyway, with a policy violation for every reader.
    if tag == "img" and attribute == "src" and not value.lower().startswith("https:"):
        return None
    return value


@lru_cache(maxsize=64)
def cleaner(base: str = "", *, https_images: bool = False) -> nh3.Cleaner:
    """The allowlist. Relative URLs are resolved against `base`, or dropped when there is none."""
    return nh3.Cleaner(
        tags=ALLOWED_TAGS,
        clean_content_tags=DROPPED_WITH_CONTENT,
        attributes=ALLOWED_ATTRIBUTES,
        attribute_filter=_https_images if https_images else None,
        url_schemes=URL_SCHEMES,
        link_rel=LINK_REL,
        set_tag_attribute_values={"img": {"loading": "lazy", "referrerpolicy": "no-referrer"}},
        # A relative URL would point at our own site: resolve it, or drop it when there is no base.
        url_relative=("rewrite_with_base", base) if base else "deny",
    )


def clean(value: str) -> str:
    """`value` without the characters PostgreSQL or XML refuse."""
    if len(value) <= PIECE:
        return BAD_CHARS.sub("", value)
    return "".join(BAD_CHARS.sub("", value[at : at + PIECE]) for at in range(0, len(value), PIECE))


def one_line(value: str, cap: int) -> str:
    """Plain text for a one-line field: clean, no bidi controls, whitespace collapsed, at most `cap`."""
    return " ".join(BIDI_CONTROLS.sub("", clean(value)).split())[:cap]


def sanitize_html(value: str, base_url: str = "") -> str:
    """Untrusted HTML -> HTML safe to insert in a page: small allowlist, http(s)/mailto URLs only."""
    return clean(cleaner(http_url(base_url)).clean(clean(value)))


def http_url(value: str, base: str = "") -> str:
    """`value` made absolute against `base` if it is an http(s) URL, else ""."""
    value = BIDI_CONTROLS.sub("", clean(value or "")).strip()
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


def http_urls(values, base: str, limit: int = 5) -> list[str]:
    """The distinct absolute http(s) URLs among `values`, at most `limit` of them."""
    urls = []
    for value in values:
        url = http_url(value if isinstance(value, str) else "", base)
        if url and url not in urls:
            urls.append(url)
            if len(urls) == limit:
                break
    return urls


def html_to_text(value: str) -> str:
    """Markup -> plain text: tags (and script/style contents) removed, entities unescaped."""
    return html.unescape(nh3.clean(value, tags=set(), attributes={}, link_rel=None))


def text_to_html(text: str) -> str:
    """Plain text -> HTML paragraphs, every character escaped."""
    paragraphs = re.split(r"\n\s*\n", text.replace("\r\n", "\n").replace("\r", "\n"))
    escaped = (html.escape(p.strip()).replace("\n", "<br>") for p in paragraphs if p.strip())
    return "".join(f"<p>{p}</p>" for p in escaped)


def render_body(value: str, kind: str, base: str, cap: int) -> str:
    """An entry's body as safe HTML of at most `cap` characters ("" for content that is not text)."""
    kind = (kind or "text/html").lower()
    if "xhtml" in kind:
        # feedparser writes XHTML's <br/> as <br></br>, which HTML reads as two line breaks.
        value = XHTML_VOID_END.sub("", value[:cap])
    if "html" in kind or "xml" in kind:
        return _capped(lambda v: sanitize_html(v, base), value, cap)
    if kind.startswith("text"):
        return _capped(lambda v: text_to_html(clean(v)), value, cap)
    return ""  # e.g. base64 images as Atom content: nothing to show as text


def shows_nothing(body: str) -> bool:
    """True for sanitized HTML a reader would see nothing of (say an iframe-only embed, cleaned)."""
    return "<img" not in body and not VISIBLE_TEXT.search(body)


def _capped(render, value: str, cap: int) -> str:
    # Cut the input, not the output, so the output is always well-formed; rendering can grow it
    # (escaping, rel attributes), so cut again until it fits.
    value = value[:cap]
    out = render(value)
    while len(out) > cap:
        value = value[: max(0, len(value) * cap // len(out) - 64)]
        out = render(value)
    return out
