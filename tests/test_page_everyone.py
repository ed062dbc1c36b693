"""The page for everyone: screen readers hear new entries politely, the keyboard reaches everything,
text keeps its contrast in light and dark, and nothing overflows a phone."""

from dataclasses import replace

import pytest

from feeds.models import Feed
from tests.factories import item
from tests.test_page_live import LIVE, entry_id, publish, titles

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PHONE = {
    "viewport": {"width": 375, "height": 740},
    "is_mobile": True,
    "has_touch": True,
    "device_scale_factor": 2,
}
DESKTOP = {"viewport": {"width": 1280, "height": 800}}

# WCAG 2 contrast of each kind of text on the page, against what is really behind it.
CONTRAST = """() => {
  const luminance = (color) => {
    const [r, g, b] = color.match(/[\\d.]+/g).slice(0, 3).map((v) => {
      v = Number(v) / 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const background = (node) => {
    for (; node; node = node.parentElement) {
      const color = getComputedStyle(node).backgroundColor;
      if (!/rgba\\(.*, 0\\)$/.test(color) && color !== "transparent") return color;
    }
    return getComputedStyle(document.documentElement).backgroundColor;
  };
  const ratios = {};
  for (const selector of [".brand", ".filter label", "#feed-filter", "#status .label", "#new-entries",
      ".entry .source", ".entry time", ".entry .updated-mark", ".entry .title", ".entry .title a",
      ".entry .summary p", ".entry .summary a", ".entry .author", ".entry .permalink", ".older"]) {
    const node = document.querySelector(selector);
    if (!node) { ratios[selector] = null; continue; }
    const [a, b] = [luminance(getComputedStyle(node).color), luminance(background(node))];
    ratios[selector] = Math.round(((Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)) * 10) / 10;
  }
  return ratios;
}"""


def seed(feed, other):
    from feeds.store import store
    from tests.factories import document

    long_word = "Supercalifragilisticexpialidocious" * 4
    store(
        feed,
        document(
            item(
                "a",
                title=f"A headline with {long_word} in it",
                summary=f"<p>See https://example.com/{long_word}</p>",
            ),
            title=feed.title,
        ),
    )
    store(
        other,
        document(
            replace(
                item("b", summary='<p>With <a href="https://example.com/">a link</a>.</p>'), author="Ana"
            ),
            title=other.title,
        ),
    )
    # A correction, so the "updated" mark is on the page too.
    store(
        other,
        document(
            replace(
                item("b", summary='<p>With <a href="https://example.com/">a link</a>, fixed.</p>'),
                author="Ana",
            ),
            title=other.title,
        ),
    )


def test_every_text_keeps_its_contrast_and_nothing_overflows_in_light_and_dark(stack, writes, open_page):
    web, _ = stack.web()
    feed = Feed.objects.create(url="https://example.com/wire.xml", title="Wire")
    other = Feed.objects.create(url="https://example.com/city.xml", title="City Desk")
    writes(seed, feed, other)
    backgrounds = {}
    for scheme in ("light", "dark"):
        for name, device in (("phone", PHONE), ("desktop", DESKTOP)):
            page = open_page(web + "/", color_scheme=scheme, **device)
            page.wait_for_selector(LIVE)
            page.eval_on_selector("#new-entries", "node => { node.hidden = false }")  # measure it too
            ratios = page.evaluate(CONTRAST)
            assert None not in ratios.values(), ratios
            low = {selector: ratio for selector, ratio in ratios.items() if ratio < 4.5}
            assert low == {}, f"{scheme} {name}: {low}"
            width = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
            assert width[0] <= width[1], f"{scheme} {name} overflows sideways: {width}"
            backgrounds[scheme] = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
            page.close()
    assert backgrounds == {"light": "rgb(255, 255, 255)", "dark": "rgb(18, 18, 18)"}


def test_the_keyboard_reaches_everything_and_screen_readers_hear_new_entries(stack, writes, open_page):
    web, _ = stack.web()
    feed = Feed.objects.create(url="https://example.com/wire.xml", title="Wire")
    other = Feed.objects.create(url="https://example.com/city.xml", title="City Desk")
    writes(publish, feed, *[f"wire {n}" for n in range(1, 61)])
    writes(publish, other, "city 1")
    page = open_page(web + "/", **DESKTOP)
    page.wait_for_selector(LIVE)

    # New entries are announced in a polite live region of their own, not by reading whole articles.
    assert page.get_attribute("#announcer", "aria-live") == "polite"
    assert page.get_attribute("#entries", "aria-live") is None
    assert page.get_attribute("#status", "role") == "status"
    writes(publish, feed, "wire 61", "wire 62")
    page.wait_for_function("() => document.getElementById('announcer').textContent === '2 new entries'")

    # Tab: the brand, then the source filter, which the arrow keys change; focus is visible.
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.className") == "brand"
    assert page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle") == "solid"
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.id") == "feed-filter"
    page.keyboard.press("ArrowDown")  # "City Desk" sorts first
    page.wait_for_url(f"{web}/?feed={other.pk}")
    page.wait_for_function("() => document.querySelectorAll('#entries .entry').length === 1")
    page.keyboard.press("ArrowUp")
    page.wait_for_url(web + "/")
    page.wait_for_function("() => document.querySelectorAll('#entries .entry').length === 50")

    # "Older entries" by keyboard loads the next page and puts the focus on its first entry.
    page.focus("#older")
    page.keyboard.press("Enter")
    page.wait_for_function("id => document.activeElement.id === id", arg=f"entry-{entry_id('wire 13')}")
    assert page.locator("#entries .entry").count() == 63

    # Scrolled away, the "new entries" button is a real button: Enter takes the focus to the newest.
    writes(publish, feed, "wire 63")
    page.wait_for_selector("#new-entries:not([hidden])")
    page.focus("#new-entries")
    page.keyboard.press("Enter")
    page.wait_for_function("() => window.scrollY === 0")
    newest = entry_id("wire 63")
    assert page.evaluate("() => document.activeElement.id") == f"entry-{newest}"
    assert titles(page)[0] == "wire 63"
    # From the entry, Tab goes on to its own links.
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.className") == "source"
