import time
from urllib.parse import urlencode
from xml.sax.saxutils import escape

from django.conf import settings
from django.db.models import Count, Q
from django.http import Http404, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.gzip import gzip_page
from django.views.decorators.http import require_GET

from feeds.changelog import changes_after, latest_seq
from feeds.models import Entry, Feed
from live.events import encode, entry_data, event_type, iso
from live.query import BadQuery, number

PAGE_SIZE = 50
MAX_LIMIT = 500


def visible_entries():
    # Posts belong to their blog's page, not to the river of sources.
    return Entry.objects.filter(removed_at__isnull=True, review="", feed__isnull=False).select_related("feed")


@require_GET
def index(request):
    """The newest entries (or those before `before`), rendered by the server; the script then
    follows the live socket."""
    try:
        feed_id = number(request.GET.get("feed"))
        before = number(request.GET.get("before"))
    except BadQuery:
        return HttpResponseBadRequest(
            "feed and before must be non-negative integers\n", content_type="text/plain"
        )
    # Read the cursor first: every change up to it is in the list or arrives over the socket.
    cursor = latest_seq()
    entries = visible_entries().filter(created_seq__lte=cursor)
    if feed_id is not None:
        entries = entries.filter(feed_id=feed_id)
    if before is not None:
        entries = entries.filter(created_seq__lt=before)
    entries = list(entries.order_by("-created_seq")[:PAGE_SIZE])
    feeds = list(Feed.objects.order_by("title", "url"))
    context = {
        "entries": entries,
        "cursor": str(cursor),
        "feeds": feeds,
        "feed_id": feed_id,
        "feed": next((feed for feed in feeds if feed.pk == feed_id), None),
        "before": before,
        "older": str(entries[-1].created_seq) if len(entries) == PAGE_SIZE else "",
        "page_size": PAGE_SIZE,
    }
    return render(request, "live/index.html", context)


@require_GET
def entry_detail(request, pk):
    """One entry's own page, for sharing; it follows corrections to that entry live."""
    cursor = latest_seq()  # before the read, as on the index
    # A held or rejected entry has no permalink: to readers it does not exist.
    entry = get_object_or_404(Entry.objects.select_related("feed"), pk=pk, review="")
    if entry.removed_at is not None:
        # Not found, as for any unknown entry, but a shared link gets told why.
        return render(request, "live/removed.html", {"entry": entry}, status=404)
    return render(request, "live/entry.html", {"entry": entry, "cursor": str(cursor)})


@require_GET
@gzip_page  # public, secret-free JSON: nothing for BREACH to guess
def api_entries(request):
    """Entries as events. `after`: changes since a cursor, oldest first. Else newest first,
    paged with `before` (the `next` link), with the `cursor` to follow the socket from.

    A page ends at `limit` entries or at the entry that takes it past API_PAGE_MAX_BYTES, whichever
    comes first; `next` continues from there."""
    try:
        after = number(request.GET.get("after"))
        before = number(request.GET.get("before"))
        limit = number(request.GET.get("limit", str(PAGE_SIZE)))
        feed_id = number(request.GET.get("feed"))
        if not limit:
            raise BadQuery("limit")
        limit = min(limit, MAX_LIMIT)
    except BadQuery:
        return JsonResponse(
            {"error": "after, before, limit and feed must be non-negative integers"}, status=400
        )
    page = {"limit": limit, **({"feed": feed_id} if feed_id is not None else {})}
    if after is not None:
        rows = _within_bytes(changes_after(after, feed_id=feed_id, limit=limit), after)
        page["after"] = rows[-1][0].seq if rows else after
    else:
        # Read first, as the index does: a reader that follows the socket from `cursor` misses nothing.
        cursor = latest_seq()
        rows = visible_entries().order_by("-created_seq")
        if feed_id is not None:
            rows = rows.filter(feed_id=feed_id)
        if before is not None:
            rows = rows.filter(created_seq__lt=before)
        rows = _within_bytes(list(rows[:limit]), None)
        page["before"] = rows[-1][0].created_seq if rows else None
    full = len(rows) == limit or (rows and rows[-1][2])
    next_url = f"{request.path}?{urlencode(page)}" if full else None
    tail = {"next": next_url}
    if after is None:
        tail["cursor"] = str(cursor)  # where a reader of this page resumes the live socket
    # Each item is encoded once, to measure it and to send it.
    items = ",".join(text for _, text, _ in rows)
    return HttpResponse(f'{{"items":[{items}],{encode(tail)[1:]}', content_type="application/json")


def _item(entry: Entry, after: int | None) -> dict:
    kind = event_type(entry, after) if after is not None else "entry.created"
    return {"type": kind, "cursor": entry.cursor, "entry": entry_data(entry)}


def _within_bytes(entries: list[Entry], after: int | None) -> list[tuple[Entry, str, bool]]:
    """(entry, its encoded item, whether the page was cut after it) for the leading entries that
    fit in API_PAGE_MAX_BYTES; always at least one, so that `next` always moves on."""
    rows, size = [], 0
    for entry in entries:
        text = encode(_item(entry, after))
        size += len(text.encode())
        if rows and size > settings.API_PAGE_MAX_BYTES:
            rows[-1] = (*rows[-1][:2], True)
            break
        rows.append((entry, text, False))
    return rows


@require_GET
@gzip_page
def api_feeds(request):
    feeds = Feed.objects.annotate(entry_count=Count("entries", filter=Q(entries__removed_at__isnull=True)))
    return JsonResponse(
        {
            "items": [
                {
                    "id": feed.pk,
                    "url": feed.url,
                    "title": feed.title,
                    "site_url": feed.site_url,
                    "enabled": feed.enabled,
                    "interval": feed.interval,
                    "last_fetched_at": iso(feed.last_fetched_at),
                    "next_fetch_at": iso(feed.next_fetch_at),
                    "next_fetch_reason": feed.next_fetch_reason,
                    "error_count": feed.error_count,
                    "last_error": feed.last_error,
                    "last_error_at": iso(feed.last_error_at),
                    "entry_count": feed.entry_count,
                }
                for feed in feeds
            ]
        }
    )


DEMO_PERIOD = 4
AGENCY_PERIOD = 15


@require_GET
def demo_feed(request):
    """A feed that gains an entry every few seconds, so `make run` is live with no internet."""
    return _demo(DEMO_PERIOD, "Livelog demo", "demo", "Demo entry", "This entry was published at ")


@require_GET
def demo_agency(request):
    """The demo live blog's second source: slower, with its own titles."""
    return _demo(AGENCY_PERIOD, "Livelog demo agency", "agency", "Agency flash", "Filed by the agency at ")


def _demo(period: int, title: str, guid: str, name: str, text: str) -> HttpResponse:
    if not settings.LIVELOG_DEMO:
        raise Http404
    now = int(time.time()) // period
    items = []
    for n in range(now, now - 20, -1):
        stamp = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(n * period))
        items.append(
            f"<item><guid isPermaLink='false'>{guid}-{n}</guid><title>{name} {n % 10000}</title>"
            f"<pubDate>{stamp}</pubDate><description>{escape(f'<p>{text}')}"
            f"{stamp}{escape('.</p>')}</description></item>"
        )
    body = (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>{title}</title><link>https://example.com/livelog-{guid}</link>"
        + "".join(items)
        + "</channel></rss>"
    )
    return HttpResponse(body, content_type="application/rss+xml; charset=utf-8")
