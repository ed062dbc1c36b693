"""The live stream as Server-Sent Events, for networks that block WebSockets."""

import asyncio

from django.http import JsonResponse, StreamingHttpResponse

from live.hub import get_hub
from live.query import BadQuery, stream_query
from live.subscription import Dropped, current_seq, find_blog

KEEPALIVE = 15.0


async def stream(request):
    """GET /api/stream/: the same events as the socket (`blog=`, `feed=`); resumes from Last-Event-ID."""
    try:
        query = stream_query(request.GET, last_event_id=request.headers.get("Last-Event-ID"))
    except BadQuery:
        return JsonResponse(
            {"error": "Last-Event-ID, after and feed must be non-negative integers, blog a slug"}, status=400
        )
    blog = None
    if query.blog is not None:
        blog = await find_blog(query.blog)
        if blog is None:
            return JsonResponse({"error": "no blog with that slug"}, status=404)
    after = query.after if query.after is not None else await current_seq()
    subscription = get_hub().subscribe(after, query.feed, blog=blog)
    response = StreamingHttpResponse(events(subscription), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # proxies must not hold events back
    return response


async def events(subscription):
    iterator = aiter(subscription)
    pending = None
    try:
        yield "retry: 2000\n\n"
        while True:
            pending = pending or asyncio.ensure_future(anext(iterator))
            done, _ = await asyncio.wait({pending}, timeout=KEEPALIVE)
            if not done:
                yield ": keep-alive\n\n"  # keeps idle connections open through proxies
                continue
            seq, text = pending.result()
            pending = None
            yield f"id: {seq}\ndata: {text}\n\n"
    except Dropped:
        return  # the client reconnects with Last-Event-ID and catches up
    finally:
        if pending is not None:
            pending.cancel()
        subscription.close()
