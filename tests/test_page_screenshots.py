"""Screenshots of the page with several real-looking feeds, on a desktop and a phone, light and dark.

They are written to docs/ (the README shows them) only when LIVELOG_SCREENSHOTS=1; otherwise to a
temporary directory, so an ordinary test run still renders all four and checks them."""

import hashlib
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from feeds.models import Feed
from feeds.parsing import ParsedEntry, ParsedFeed
from feeds.store import store
from tests.test_page_everyone import DESKTOP, PHONE
from tests.test_page_live import LIVE

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
DOCS = Path(__file__).resolve().parent.parent / "docs"

# (feed, minutes ago, title, author, summary), oldest first.
STORY = [
    (
        "World Wire",
        95,
        "Ceasefire talks resume in Geneva as delegations arrive for a second round",
        "",
        "<p>Negotiators from both sides arrived on Tuesday morning. A spokesperson for the mediators "
        "said the first session would focus on humanitarian corridors.</p>",
    ),
    (
        "Markets",
        52,
        "Shares edge higher at the open as bond yields ease",
        "Priya Raman",
        "<p>The main index rose 0.4% in early trading, led by utilities and retailers.</p>"
        "<blockquote>“Investors are treating the softer inflation print as permission to buy,” one "
        "strategist said.</blockquote>",
    ),
    (
        "Weather Service",
        31,
        "Yellow wind warning for the coast from 18:00 until midnight",
        "",
        "<p>Gusts of 60 to 70 mph are possible on exposed coasts. Expect:</p>"
        "<ul><li>delays to ferries and coastal rail</li><li>spray and large waves near sea fronts</li></ul>",
    ),
    (
        "City Desk",
        14,
        "Council approves riverside cycle lane after a six-hour debate",
        "Maya Okafor",
        "<p>The plan passed by 31 votes to 24. Construction of the 3.2 km route is due to start in "
        'spring; the <a href="https://example.com/plans">full plans</a> are published online.</p>',
    ),
    (
        "Transit Alerts",
        2,
        "Northern line: minor delays between Camden Town and Euston",
        "",
        "<p>Trains are running with minor delays after an earlier signal failure. Allow an extra ten "
        "minutes for your journey.</p>",
    ),
]
CORRECTION = (
    "City Desk",
    "Council approves riverside cycle lane after a six-hour debate",
    "<p>The plan passed by 31 votes to 24 (an earlier version said 32 to 23). Construction of the "
    '3.2 km route is due to start in spring; the <a href="https://example.com/plans">full plans</a> '
    "are published online.</p>",
)


def entry(title, author, summary, published):
    return ParsedEntry(
        key=hashlib.sha256(title.encode()).hexdigest(),
        guid=title,
        link="https://example.com/" + hashlib.sha256(title.encode()).hexdigest()[:12],
        title=title,
        summary_html=summary,
        author=author,
        published=published,
        updated=published,
    )


def tell_the_story():
    now = datetime.now(UTC)
    feeds = {}
    ages = {}
    for name, minutes, title, author, summary in STORY:
        if name not in feeds:
            feeds[name] = Feed.objects.create(url=f"https://example.com/{len(feeds)}.xml", title=name)
        ages[title] = (now - timedelta(minutes=minutes), author)
        store(
            feeds[name],
            ParsedFeed(name, "https://example.com/", [entry(title, author, summary, ages[title][0])]),
        )
    name, title, summary = CORRECTION
    published, author = ages[title]
    store(feeds[name], ParsedFeed(name, "https://example.com/", [entry(title, author, summary, published)]))


def test_screenshots_on_a_desktop_and_a_phone_in_light_and_dark(stack, writes, open_page, tmp_path):
    web, _ = stack.web()
    writes(tell_the_story)
    target = DOCS if os.environ.get("LIVELOG_SCREENSHOTS") == "1" else tmp_path
    target.mkdir(exist_ok=True)
    for name, device in (("desktop", DESKTOP), ("phone", PHONE)):
        for scheme in ("light", "dark"):
            page = open_page(web + "/", color_scheme=scheme, **device)
            page.wait_for_selector(LIVE)
            assert page.locator("#entries .entry").count() == len(STORY)
            assert page.locator(".updated-mark").count() == 1
            assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
            path = target / f"screenshot-{name}-{scheme}.png"
            page.screenshot(path=path, animations="disabled", caret="initial")
            assert path.stat().st_size > 10_000
            page.close()
