"""The demo feeds that `make run` follows (LIVELOG_DEMO), served by the site itself: live with no internet."""

import time
from xml.sax.saxutils import escape

from django.conf import settings
from django.http import Http404, HttpResponse
from django.views.decorators.http import require_GET

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
