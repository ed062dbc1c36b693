"""Content-Encoding, undone a bounded piece at a time, every layer capped, the deadline checked throughout.

httpx's decoders expand each network chunk in one call: 64 KB of gzipped zeros become 64 MB at once,
and stacked encodings multiply that. Here each decoding step gives at most PIECE bytes. Capping only
the final output is not enough either: a brotli layer around a gzip stream of empty blocks expands to
gigabytes that decode to nothing. So the bytes coming out of every layer (the raw body included) count
against the cap, at most MAX_CODINGS codings are undone, and the deadline is checked for every piece.
"""

import zlib
from collections.abc import Iterable, Iterator

from feeds.bounds import Deadline
from feeds.guard import FetchError

try:
    import brotli
except ImportError:
    try:
        import brotlicffi as brotli
    except ImportError:
        brotli = None
if brotli is not None and not hasattr(brotli.Decompressor, "can_accept_more_data"):
    brotli = None  # before 1.2 a Brotli decoder cannot bound its output: a bomb would expand in one call

ACCEPT_ENCODING = "gzip, deflate, br" if brotli else "gzip, deflate"
# Servers apply one coding; two are tolerated. More is refused before any work (3,000 stacked
# generators would also overflow the stack).
MAX_CODINGS = 2
# At most this many decoded bytes come out of one decoding step.
PIECE = 64 * 1024

DECODE_ERRORS = (zlib.error, brotli.error) if brotli else (zlib.error,)


def decode(chunks: Iterable[bytes], content_encoding: str, limit: int, deadline: Deadline) -> Iterator[bytes]:
    """The decoded body, piece by piece. Raises FetchError past `limit` bytes out of any layer."""
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    codings = [c for c in codings if c not in ("", "identity")]
    if len(codings) > MAX_CODINGS:
        raise FetchError(f"too many content codings ({len(codings)}; at most {MAX_CODINGS} are decoded)")
    stream = _capped(chunks, limit, deadline, "")
    # Codings are listed in the order they were applied, so they are undone from the last one.
    for n, coding in enumerate(reversed(codings), 1):
        if coding in ("gzip", "x-gzip"):
            stream = _inflate(stream, zlib.MAX_WBITS | 16)
        elif coding == "deflate":
            stream = _inflate(stream, zlib.MAX_WBITS)
        elif coding == "br" and brotli:
            stream = _unbrotli(stream)
        else:
            raise FetchError(f"unsupported Content-Encoding: {coding}")
        stream = _capped(stream, limit, deadline, "" if n == len(codings) else f" (undoing {coding})")
    return stream


def _capped(pieces: Iterable[bytes], limit: int, deadline: Deadline, where: str) -> Iterator[bytes]:
    size = 0
    for piece in pieces:
        deadline.check()
        size += len(piece)
        if size > limit:
            raise FetchError(f"response is larger than the limit of {limit} bytes{where}")
        yield piece


def _inflate(chunks: Iterable[bytes], wbits: int) -> Iterator[bytes]:
    decompressor = zlib.decompressobj(wbits)
    first = True
    for chunk in chunks:
        data, piece = chunk, b""
        # Until the input is used up, and the last piece was not full (a full one may leave output pending).
        while (data or len(piece) == PIECE) and not decompressor.eof:
            try:
                piece = decompressor.decompress(data, PIECE)
            except zlib.error:
                if not (first and wbits == zlib.MAX_WBITS):
                    raise
                # "deflate" without its zlib header: raw deflate, as some servers send it.
                decompressor = zlib.decompressobj(-zlib.MAX_WBITS)
                first = False
                continue
            first = False
            data = decompressor.unconsumed_tail
            yield piece
        if decompressor.eof:
            return  # anything after the end of the compressed data is ignored


def _unbrotli(chunks: Iterable[bytes]) -> Iterator[bytes]:
    decompressor = brotli.Decompressor()
    for chunk in chunks:
        yield decompressor.process(chunk, output_buffer_limit=PIECE)
        while not decompressor.can_accept_more_data():
            yield decompressor.process(b"", output_buffer_limit=PIECE)
    while not decompressor.is_finished():  # output can still be pending once all input is in
        piece = decompressor.process(b"", output_buffer_limit=PIECE)
        if not piece:
            return  # truncated: keep what came, as for gzip
        yield piece
