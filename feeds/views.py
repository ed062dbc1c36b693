"""The WebSub callback: plain Django views, one URL per subscription (see feeds/websub.py)."""

from collections import Counter

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from django.http import HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from feeds import stats, websub, websub_push

PREFIX = "/websub/"


@csrf_exempt  # hubs are not browsers: the callback's token and the signature are the proof
@require_http_methods(["GET", "POST"])
async def callback(request, token: str):
    if request.method == "GET":
        status, text = await _in_pool(websub.verify, token, request.GET.copy())
        return _text(text, status)
    received_at = timezone.now()
    limit = settings.FEEDS_MAX_BYTES
    # Under ASGI the body was already capped by PushBodyLimit; this holds under any other server too.
    body = request.read(limit + 1)
    if len(body) > limit:
        stats.observe(Counter({"push:outcome:too_large": 1}))
        return _text(f"the body is larger than {limit} bytes", 413)
    push = await _in_pool(
        websub_push.receive,
        token,
        body,
        request.headers.get("X-Hub-Signature", ""),
        request.headers.get("Content-Type", ""),
        received_at,
    )
    return _text("" if push.status == 204 else push.outcome, push.status)


async def _in_pool(function, *args):
    """Run database work on the event loop's pool threads, which keep their connection (CONN_MAX_AGE).

    A sync view under ASGI runs in a new thread per request, so it opens a new database connection
    for every push: 50-80 ms on a loaded PostgreSQL, most of a push's way to its readers.
    """

    def run():
        # As around a request: drop a connection that is too old or broken, before and after.
        close_old_connections()
        try:
            return function(*args)
        finally:
            close_old_connections()

    return await sync_to_async(run, thread_sensitive=False)()


def _text(text: str, status: int) -> HttpResponse:
    return HttpResponse(text, status=status, content_type="text/plain; charset=utf-8")


class PushBodyLimit:
    """ASGI wrapper: a push larger than FEEDS_MAX_BYTES is refused before Django spools it to disk.

    Django's ASGI handler reads a whole request body before the view runs, whatever its size; a feed
    pushed to us is capped like a fetched one, by Content-Length up front and by the bytes that arrive.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX) or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        limit = settings.FEEDS_MAX_BYTES
        declared = dict(scope.get("headers", [])).get(b"content-length", b"0")
        size = int(declared) if declared.isdigit() else 0
        parts, received = [], 0
        while size <= limit:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            parts.append(message.get("body", b""))
            received += len(parts[-1])
            size = max(size, received)
            if not message.get("more_body"):
                break
        if size > limit:
            await _too_large(send, limit)
            return
        body = b"".join(parts)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _too_large(send, limit: int) -> None:
    await sync_to_async(stats.observe, thread_sensitive=False)(Counter({"push:outcome:too_large": 1}))
    text = f"the body is larger than {limit} bytes".encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(text)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": text})
