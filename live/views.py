from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Count, Max, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.cache import get_conditional_response, patch_cache_control
from django.utils.http import http_date, quote_etag
from django.views.decorators.gzip import gzip_page
from django.views.decorators.http import require_GET

from blogs.models import Blog, BlogChange, BlogSource
from feeds.changelog import changes_after
from feeds.models import Entry, Feed
from live.events import blog_data, change_event, encode, entry_data, event_type, iso
from live.query import BadQuery, number
from live.replay import blog_changes_after, latest_seq

PAGE_SIZE = 50
MAX_LIMIT = 500


# An ended blog's page and API may be kept this long by a CDN (and a browser for a minute); its
# ETag changes with any change to it (a late correction, a source removed), so revalidating is cheap.
ARCHIVE_CACHE = {"public": True, "max_age": 60, "s_maxage": 3600, "stale_while_revalidate": 86400}


def visible_entries(blog: Blog | None = None):
    # Held and rejected entries are no reader's; posts belong to their blog's page, not the river.
    entries = Entry.objects.filter(removed_at__isnull=True, review="").select_related("feed")
    return entries.filter(feed__isnull=False) if blog is None else entries.filter(blog_entries(blog))


def blog_entries(blog: Blog) -> Q:
    """The entries a blog shows: of its sources, and its posts; an ended blog's, those that came
    before its end."""
    sources = BlogSource.objects.filter(blog=blog).values("feed_id")
    condition = Q(feed_id__in=Subquery(sources)) | Q(blog=blog, feed__isnull=True)
    if blog.ended_seq is not None:
        condition &= Q(created_seq__lte=blog.ended_seq)
    return condition


def blog_version(blog: Blog) -> str:
    """Changes with any change a reader of the blog can see: its own, or one of its entries'."""
    entries = Entry.objects.filter(blog_entries(blog)).aggregate(latest=Max("seq"), count=Count("pk"))
    own = BlogChange.objects.filter(blog=blog).aggregate(latest=Max("seq"))["latest"]
    return f"{blog.pk}-{own or 0}-{entries['latest'] or 0}-{entries['count']}"


def archived(request, blog: Blog, respond):
    """An ended blog is an archive: served with validators, a 304 when unchanged, and kept by CDNs."""
    if not blog.ended:
        return respond()
    etag, modified = quote_etag(blog_version(blog)), blog.updated_at.timestamp()
    response = get_conditional_response(request, etag=etag, last_modified=int(modified))
    if response is None:
        response = respond()
    response["ETag"], response["Last-Modified"] = etag, http_date(modified)
    patch_cache_control(response, **ARCHIVE_CACHE)
    return response


def find_blog(slug: str) -> Blog:
    return get_object_or_404(Blog, slug=slug)


@require_GET
def index(request):
    """The newest entries (or those before `before`), rendered by the server; the script then
    follows the live socket."""
    return river(request, None)


@require_GET
def blog_page(request, slug):
    """One live blog: the same page as the river, for the blog's sources and posts."""
    blog = find_blog(slug)
    return archived(request, blog, lambda: river(request, blog))


def river(request, blog: Blog | None):
    try:
        feed_id = number(request.GET.get("feed"))
        before = number(request.GET.get("before"))
    except BadQuery:
        return HttpResponseBadRequest(
            "feed and before must be non-negative integers\n", content_type="text/plain"
        )
    # Read the cursor first: every change up to it is in the list or arrives over the socket.
    cursor = latest_seq()
    entries = visible_entries(blog).filter(created_seq__lte=cursor)
    if feed_id is not None:
        entries = entries.filter(feed_id=feed_id)
    if before is not None:
        entries = entries.filter(created_seq__lt=before)
    entries = list(entries.order_by("-created_seq")[:PAGE_SIZE])
    feeds = list((blog.sources.all() if blog is not None else Feed.objects.all()).order_by("title", "url"))
    base_url = "/" if blog is None else f"/blogs/{blog.slug}/"
    context = {
        "blog": blog,
        "blogs": _blogs_to_link() if blog is None else [],
        "base_url": base_url,
        "page_url": request.build_absolute_uri(base_url),
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


def _blogs_to_link() -> list[Blog]:
    return list(Blog.objects.filter(state=Blog.State.LIVE).order_by("-created_at")[:10])


@require_GET
def entry_detail(request, pk, slug=None):
    """One entry's own page, for sharing (within a blog, at /blogs/<slug>/entries/<id>/); it follows
    corrections to that entry live."""
    blog = find_blog(slug) if slug is not None else None
    cursor = latest_seq()  # before the read, as on the index
    # A held or rejected entry has no permalink: to readers it does not exist.
    entries = Entry.objects.select_related("feed").filter(review="")
    if blog is not None:
        entries = entries.filter(blog_entries(blog))
    entry = get_object_or_404(entries, pk=pk)
    if blog is None and entry.feed_id is None:
        # An editor's post lives in its blog: its permalink is there.
        return redirect("blog-entry", entry.blog.slug, entry.pk)

    def respond():
        context = {"entry": entry, "blog": blog}
        if entry.removed_at is not None:
            # Not found, as for any unknown entry, but a shared link gets told why.
            return render(request, "live/removed.html", context, status=404)
        return render(request, "live/entry.html", {**context, "cursor": str(cursor)})

    return respond() if blog is None else archived(request, blog, respond)


@require_GET
@gzip_page  # public, secret-free JSON: nothing for BREACH to guess
def api_entries(request):
    """Entries as events. `after`: changes since a cursor, oldest first. Else newest first,
    paged with `before` (the `next` link), with the `cursor` to follow the socket from.

    A page ends at `limit` entries or at the entry that takes it past API_PAGE_MAX_BYTES, whichever
    comes first; `next` continues from there.

    `blog=<slug>`: that blog's stream (its own changes among its entries'); `feed=` within it."""
    blog = None
    if request.GET.get("blog"):
        blog = Blog.objects.filter(slug=request.GET["blog"]).first()
        if blog is None:
            return JsonResponse({"error": "no blog with that slug"}, status=404)
        return archived(request, blog, lambda: entries_page(request, blog))
    return entries_page(request, None)


def entries_page(request, blog: Blog | None):
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
    if blog is not None:
        page = {"blog": blog.slug, **page}
    if after is not None:
        if blog is None:
            changes = changes_after(after, feed_id=feed_id, limit=limit)
        else:
            changes, _ = blog_changes_after(blog, after, feed_id=feed_id, limit=limit)
        rows = _within_bytes(changes, after)
        page["after"] = rows[-1][0].seq if rows else after
    else:
        # Read first, as the index does: a reader that follows the socket from `cursor` misses nothing.
        cursor = latest_seq()
        rows = visible_entries(blog).order_by("-created_seq")
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


def _item(entry: Entry | BlogChange, after: int | None) -> dict:
    if isinstance(entry, BlogChange):  # a blog's own change, in its stream
        return change_event(entry, after)
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


def _blogs_with_newest():
    """Every blog, live ones first, each with its newest entry (three queries in all)."""
    newest = (
        Entry.objects.filter(
            Q(feed__blog_sources__blog=OuterRef("pk")) | Q(blog=OuterRef("pk"), feed__isnull=True),
            removed_at__isnull=True,
            review="",
        )
        .filter(created_seq__lte=Coalesce(OuterRef("ended_seq"), Value(2**62)))
        .order_by("-created_seq")
        .values("pk")[:1]
    )
    blogs = list(
        Blog.objects.annotate(newest_id=Subquery(newest)).prefetch_related("sources").order_by("-created_at")
    )
    order = {Blog.State.LIVE: 0, Blog.State.SCHEDULED: 1, Blog.State.ENDED: 2}
    blogs.sort(key=lambda blog: order.get(blog.state, 3))
    entries = Entry.objects.select_related("feed").in_bulk([b.newest_id for b in blogs if b.newest_id])
    for blog in blogs:
        blog.newest = entries.get(blog.newest_id)
    return blogs


def _blog_item(blog: Blog) -> dict:
    return {
        **blog_data(blog),
        "sources": [{"id": feed.pk, "title": feed.title or feed.url} for feed in blog.sources.all()],
        "newest": entry_data(blog.newest) if getattr(blog, "newest", None) else None,
        "stream": f"/ws/live/?blog={blog.slug}",
        "entries": f"/api/entries/?blog={blog.slug}",
    }


@require_GET
def api_blogs(request):
    """Every blog, live ones first, with its sources and newest entry."""
    return JsonResponse({"items": [_blog_item(blog) for blog in _blogs_with_newest()]})


@require_GET
def api_blog(request, slug):
    blog = next((b for b in _blogs_with_newest() if b.slug == slug), None)
    if blog is None:
        return JsonResponse({"error": "no blog with that slug"}, status=404)
    return archived(request, blog, lambda: JsonResponse(_blog_item(blog)))


@require_GET
def blog_list(request):
    """/blogs/: the blogs, live ones first, each with its newest entry; new entries update it live."""
    cursor = latest_seq()
    return render(request, "live/blogs.html", {"blogs": _blogs_with_newest(), "cursor": str(cursor)})


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
                    # WebSub: the hubs the feed names, its topic, and until when a hub pushes it.
                    "hubs": feed.hubs,
                    "topic": feed.topic,
                    "pushed_until": iso(feed.pushed_until),
                }
                for feed in feeds
            ]
        }
    )
