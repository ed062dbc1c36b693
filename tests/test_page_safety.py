"""Hostile feed content, through the real pipeline (served feeds, the worker, the socket), rendered
by the page's script and by the server: nothing in it ever runs in the browser."""

import json
from xml.sax.saxutils import escape

import pytest

from feeds.models import Entry, Feed
from tests.procs import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# Each payload, if it ever ran, would call alert() or set window.pwned.
TITLES = [
    "<script>alert('title 1')</script>",
    "\"><img src=x onerror=alert('title 2')>",
    "</h2><svg onload=alert('title 3')>",
    "<iframe srcdoc='<script>parent.alert(4)</script>'>",
]
SUMMARIES = [
    "<script>alert('s1')</script><p>script tag</p>",
    "<img src=x onerror=\"alert('s2')\"><p>event handler</p>",
    "<a href=\"javascript:alert('s3')\">javascript link</a>",
    "<a href=\"jav&#x09;ascript:alert('s4')\">tab in the scheme</a>",
    "<a href=\"data:text/html,&lt;script&gt;alert('s5')&lt;/script&gt;\">data link</a>",
    "<svg><script>alert('s6')</script></svg><svg onload=\"alert('s7')\"></svg>",
    '<svg><a xlink:href="javascript:alert(\'s8\')"><text x="20" y="20">svg link</text></a></svg>',
    # Mutation XSS: markup that changes meaning when serialized and parsed again.
    "<math><mtext><table><mglyph><style><img src=x onerror=\"alert('s9')\">",
    "<noscript><p title=\"</noscript><img src=x onerror=alert('s10')>\">",
    "<form><math><mtext></form><form><mglyph><style></math><img src onerror=\"alert('s11')\">",
    "<svg></p><style><a id=\"</style><img src=1 onerror=alert('s12')>\">",
    "<template><img src=x onerror=\"alert('s13')\"></template>",
    "<textarea><img src=x onerror=alert('s14')></textarea>",
    "<iframe srcdoc=\"<script>parent.alert('s15')</script>\"></iframe>",
    "<object data=\"javascript:alert('s16')\">",
    "<embed src=\"javascript:alert('s17')\"><base href=\"javascript:alert('s18')//\">",
    '<meta http-equiv="refresh" content="0;url=javascript:alert(\'s19\')">',
    "<details open ontoggle=\"alert('s20')\">",
    "<p style=\"background:url(javascript:alert('s21'))\" onmouseover=\"alert('s22')\">hover me</p>",
    '<a href="https://example.com/" onclick="alert(\'s23\')" target="_self">a real link</a>',
    "<input autofocus onfocus=\"alert('s24')\"><button formaction=\"javascript:alert('s25')\">go</button>",
    "<img src=x onerror=window.pwned=1//",
]
LINKS = [
    "javascript:alert('link 1')",
    "  JaVaScRiPt:alert('link 2')",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgnbGluayAzJyk8L3NjcmlwdD4=",
    "vbscript:msgbox('link 4')",
]
AUTHOR = "<img src=x onerror=alert('author')>"
FEED_TITLE = "<script>alert('feed')</script>RSS"


def rss_feed():
    items = []
    for n, summary in enumerate(SUMMARIES):
        title = TITLES[n % len(TITLES)]
        link = LINKS[n % len(LINKS)]
        items.append(
            f"<item><guid isPermaLink='false'>rss-{n}</guid><title>{escape(title)}</title>"
            f"<link>{escape(link)}</link><author>{escape(AUTHOR)}</author>"
            f"<description>{escape(summary)}</description></item>"
        )
    # The same payloads unescaped, in CDATA, as many real feeds send HTML.
    items.append(
        "<item><guid isPermaLink='false'>rss-cdata</guid>"
        "<title><![CDATA[<b>cdata</b><script>alert('c')</script>]]></title>"
        "<content:encoded><![CDATA[" + "".join(SUMMARIES) + "]]></content:encoded></item>"
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel>'
        f"<title>{escape(FEED_TITLE)}</title><link>https://example.com/</link>"
        + "".join(items)
        + "</channel></rss>"
    )


def atom_feed():
    entries = []
    for n, summary in enumerate(SUMMARIES[:8]):
        entries.append(
            f"<entry><id>urn:atom:{n}</id><title type='html'>{escape(TITLES[n % len(TITLES)])}</title>"
            f"<link href='{escape(LINKS[n % len(LINKS)], {chr(39): '&apos;'})}'/>"
            "<updated>2026-11-24T12:00:00Z</updated>"
            f"<content type='html'>{escape(summary)}</content></entry>"
        )
    entries.append(
        "<entry><id>urn:atom:xhtml</id><title type='xhtml'><div xmlns='http://www.w3.org/1999/xhtml'>"
        "<script>alert('xt')</script>xhtml</div></title><updated>2026-11-24T12:00:00Z</updated>"
        "<content type='xhtml'><div xmlns='http://www.w3.org/1999/xhtml'><p onclick=\"alert('x1')\">xhtml</p>"
        "<script>alert('x2')</script><img src='x' onerror=\"alert('x3')\"/></div></content></entry>"
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        "<title type='html'>&lt;img src=x onerror=alert(1)&gt;Atom</title><id>urn:atom</id>"
        "<updated>2026-11-24T12:00:00Z</updated>" + "".join(entries) + "</feed>"
    )


def json_feed():
    items = [
        {
            "id": f"json-{n}",
            "title": TITLES[n % len(TITLES)],
            "url": LINKS[n % len(LINKS)],
            "content_html": summary,
            "authors": [{"name": AUTHOR}],
        }
        for n, summary in enumerate(SUMMARIES[8:])
    ]
    return json.dumps(
        {"version": "https://jsonfeed.org/version/1.1", "title": "<svg onload=alert(1)>JSON", "items": items}
    )


INSPECT = """() => {
  const forbidden = ["script", "style", "iframe", "object", "embed", "base", "meta", "form", "input",
    "button", "textarea", "template", "svg", "math", "noscript", "link"];
  const bad = [];
  for (const node of document.querySelector("main").querySelectorAll("*")) {
    const tag = node.tagName.toLowerCase();
    if (node.namespaceURI !== "http://www.w3.org/1999/xhtml" || forbidden.includes(tag))
      bad.push("element " + tag);
    for (const { name, value } of node.attributes) {
      if (name.startsWith("on") || ["style", "srcdoc", "formaction"].includes(name))
        bad.push(tag + " attribute " + name);
      const url = value.replace(/[\\s\\u0000-\\u001f]/g, "").toLowerCase();
      if (["href", "src", "action", "xlink:href"].includes(name) && !/^(https?:|mailto:|\\/)/.test(url))
        bad.push(tag + " " + name + "=" + value);
    }
    const external = tag === "a" && !node.href.startsWith(location.origin);
    if (external && !(/noopener/.test(node.rel) && /noreferrer/.test(node.rel)))
      bad.push("link without noopener noreferrer: " + node.href);
  }
  return bad;
}"""


def assert_inert(page):
    # Hover and focus everything, so handlers that need a reader's touch get their chance.
    for article in page.locator("#entries .entry").all()[:60]:
        article.hover()
    page.keyboard.press("Tab")
    page.wait_for_timeout(300)
    assert page.evaluate(INSPECT) == []
    trapped = page.trapped()
    assert trapped["alerts"] == []
    assert trapped["dialogs"] == []
    assert trapped["violations"] == []  # nothing even tried: the policy never had to block anything
    assert trapped["errors"] == []
    assert [message for message in trapped["console"] if "WebSocket" not in message] == []
    assert trapped["foreign"] == []
    assert page.evaluate("() => window.pwned") is None


def test_hostile_titles_summaries_and_links_render_inert(stack, feed_server, open_page):
    web, _ = stack.web()
    stack.worker()
    rss = feed_server.route("/hostile.rss", rss_feed(), headers={"Content-Type": "application/rss+xml"})
    atom = feed_server.route("/hostile.atom", atom_feed(), headers={"Content-Type": "application/atom+xml"})
    jsonfeed = feed_server.route(
        "/hostile.json", json_feed(), headers={"Content-Type": "application/feed+json"}
    )
    page = open_page(web + "/")
    page.wait_for_selector("#status[data-state=live]")

    # Live: the worker fetches, the socket delivers, the script renders.
    for url in (rss, atom, jsonfeed):
        Feed.objects.create(url=url, interval=5)
    stack.beat()
    total = len(SUMMARIES) + 1 + 9 + len(SUMMARIES[8:])
    wait_until(lambda: Entry.objects.count() == total, 30, what="the hostile feeds fetched\n" + stack.logs())
    page.wait_for_function("n => document.querySelectorAll('#entries .entry').length === n", arg=total)
    # A title is text: shown as written, never parsed.
    assert "<script>alert('title 1')</script>" in page.locator("#entries .title").all_inner_texts()
    assert page.locator("#entries .title a").count() == 0  # no link survived: none was http(s)
    assert_inert(page)
    live_text = page.inner_text("#entries")

    # Server-rendered: the same entries, equally inert, and the same text.
    page.reload()
    page.wait_for_selector("#status[data-state=live]")
    assert_inert(page)
    assert page.inner_text("#entries").replace("updated", "") == live_text.replace("updated", "")

    # Each entry's own page.
    for entry in Entry.objects.all()[:8]:
        page.goto(f"{web}/entries/{entry.pk}/")
        page.wait_for_selector("#status[data-state=live]")
        assert_inert(page)

    # And the policy is really enforced: an HTML sink refuses a plain string.
    refused = page.evaluate(
        "() => { try { document.body.insertAdjacentHTML('beforeend', '<b>x</b>'); return 'parsed' }"
        " catch (e) { return e.name } }"
    )
    assert refused == "TypeError"
