"""Bytes to text, the way browsers and publishers actually behave.

A BOM (or the zero bytes of UTF-16/32) wins; then bytes that are valid UTF-8 are UTF-8, whatever they
declare (publishers often declare Latin-1 and send UTF-8); then the XML declaration, then the charset
of the Content-Type, then a guess by charset-normalizer (which samples the document).
"""

import codecs
import re
import unicodedata

import charset_normalizer

XML_ENCODING = re.compile(rb"""^<\?xml[^>]{0,200}?encoding\s*=\s*["']([A-Za-z0-9._:-]+)["']""")
CONTENT_TYPE_CHARSET = re.compile(r"""charset\s*=\s*["']?([A-Za-z0-9._:-]+)""", re.IGNORECASE)
NON_ASCII = re.compile(r"[^\x00-\x7f]")
# The guess and the count of letters look at this much of the document: a sample tells an encoding
# as well as the whole, in a fraction of the time (charset-normalizer holds the GIL while it works).
SAMPLE = 1 << 18
BOMS = (
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
)


def decode(content: bytes, content_type: str = "") -> str:
    """Bytes -> text, by BOM, UTF-8 validity, declared encoding, then a guess (see the module docstring)."""
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
    best = charset_normalizer.from_bytes(_sample(content)).best()
    if best is None:
        return content.decode("cp1252", "replace")
    guess = content.decode(best.encoding, "replace")
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


def _sample(content: bytes) -> bytes:
    """The first SAMPLE bytes, cut before a "<" (never the second byte of a multibyte character)."""
    if len(content) <= SAMPLE:
        return content
    cut = content.rfind(b"<", SAMPLE // 2, SAMPLE)
    return content[: cut if cut > 0 else SAMPLE]


def _letter_counts(text: str) -> tuple[int, int]:
    """(non-ASCII letters, how many of them are Latin)."""
    letters = [c for c in NON_ASCII.findall(text, 0, SAMPLE) if c.isalpha()]
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
