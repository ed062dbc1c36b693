"""The query parameters of the page, the API, the socket and the stream, parsed in one place."""

import re
from dataclasses import dataclass

from django.http import QueryDict


class BadQuery(ValueError):
    """A parameter that is not a non-negative integer: the caller answers 400 (or closes the socket)."""


def number(value: str | None) -> int | None:
    """A cursor or an id: a non-negative decimal number, or None when absent. Raises BadQuery.

    Cursors are opaque to clients; here they are change numbers.
    """
    if value in (None, ""):
        return None
    try:
        parsed = int(value)
    except ValueError:
        raise BadQuery(value) from None
    if parsed < 0 or parsed > 2**62:
        raise BadQuery(value)
    return parsed


@dataclass(frozen=True)
class StreamQuery:
    """Where a reader of the live stream starts (`after`) and what it follows (`feed`, within `blog`,
    a blog's slug)."""

    after: int | None = None
    feed: int | None = None
    blog: str | None = None


SLUG = re.compile(r"[-\w]{1,100}")


def slug(value: str | None) -> str | None:
    """A blog's slug, or None when absent. Raises BadQuery."""
    if value in (None, ""):
        return None
    if not SLUG.fullmatch(value):
        raise BadQuery(value)
    return value


def stream_query(params: QueryDict | bytes | str, last_event_id: str | None = None) -> StreamQuery:
    """The live stream's parameters, from a request's GET, or a socket's raw query string.
    Raises BadQuery."""
    if not isinstance(params, QueryDict):
        params = QueryDict(params)
    return StreamQuery(
        after=number(last_event_id or params.get("after")),
        feed=number(params.get("feed")),
        blog=slug(params.get("blog")),
    )
