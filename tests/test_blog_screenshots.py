"""Screenshots of a live blog's page (desktop and phone, light and dark) and of /blogs/.

Written to docs/ only when LIVELOG_SCREENSHOTS=1 (the README shows them); otherwise to a temporary
directory, so an ordinary run still renders and checks them."""

import os

import pytest

from blogs.models import Blog, add_source
from feeds.models import Feed
from tests.test_page_everyone import DESKTOP, PHONE
from tests.test_page_live import LIVE
from tests.test_page_screenshots import DOCS, tell_the_story

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def make_blogs():
    storm = Blog.objects.create(
        slug="storm",
        title="Storm Ciarán: live",
        description="Warnings, travel disruption and what to expect tonight, as it happens.",
        image_url="https://example.com/storm.jpg",
    )
    for name in ("Weather Service", "Transit Alerts", "City Desk"):
        add_source(storm, Feed.objects.get(title=name))
    markets = Blog.objects.create(slug="markets", title="Markets today", description="Prices and moves.")
    for name in ("Markets", "World Wire"):
        add_source(markets, Feed.objects.get(title=name))
    Blog.objects.create(slug="budget", title="Budget day", description="Starts at noon.", state="scheduled")


def test_blog_screenshots(stack, writes, open_page, tmp_path):
    web, _ = stack.web()
    writes(tell_the_story)
    writes(make_blogs)
    target = DOCS if os.environ.get("LIVELOG_SCREENSHOTS") == "1" else tmp_path
    target.mkdir(exist_ok=True)
    for name, device in (("desktop", DESKTOP), ("phone", PHONE)):
        for scheme in ("light", "dark"):
            page = open_page(web + "/blogs/storm/", color_scheme=scheme, **device)
            page.wait_for_selector(LIVE)
            assert page.locator("#entries .entry").count() == 3
            assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
            path = target / f"blog-{name}-{scheme}.png"
            page.screenshot(path=path, animations="disabled", caret="initial")
            assert path.stat().st_size > 10_000
            page.close()
    page = open_page(web + "/blogs/", color_scheme="light", **DESKTOP)
    page.wait_for_selector(LIVE)
    assert page.locator(".blog-card").count() == 3
    path = target / "blogs-desktop-light.png"
    page.screenshot(path=path, animations="disabled", caret="initial")
    assert path.stat().st_size > 10_000
