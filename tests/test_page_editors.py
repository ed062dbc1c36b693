"""The editors' voice in a real Chromium against the real processes: an editor's page and a
reader's page of the same blog, side by side (issue 13's acceptance)."""

import pytest
from django.contrib.auth.models import User
from django.test import Client

from blogs.models import Blog, add_source
from editors import actions
from editors.models import editors_group
from feeds.models import Entry, Feed
from feeds.store import store
from tests.factories import document, item
from tests.feedserver import rss
from tests.procs import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
LIVE = "#status[data-state=live]"


def publish(feed, *names):
    store(feed, document(*reversed([item(name, title=name) for name in names]), title=feed.title))


@pytest.fixture
def blog(stack, writes):
    blog = Blog.objects.create(slug="storm", title="The storm")
    wire = Feed.objects.create(url="https://example.com/wire.xml", title="Wire")
    add_source(blog, wire)
    blog.wire = wire
    return blog


@pytest.fixture
def editor():
    user = User.objects.create_user("ed", first_name="Ed", last_name="Itor")
    user.groups.add(editors_group())
    return user


@pytest.fixture
def pages(stack, open_page, editor):
    """pages(path) -> (the editor's page, a reader's page), both live."""
    web, _ = stack.web()
    client = Client()
    client.force_login(editor)
    session = client.cookies["sessionid"].value

    def open_both(path, viewport=None):
        def signed_in(context):
            context.add_cookies([{"name": "sessionid", "value": session, "url": web}])

        options = {"viewport": viewport} if viewport else {}
        editor_page = open_page(web + path, setup=signed_in, **options)
        reader_page = open_page(web + path, **options)
        for page in (editor_page, reader_page):
            page.wait_for_selector(LIVE)
        return editor_page, reader_page

    open_both.web = web
    return open_both


def clean(page):
    trapped = page.trapped()
    assert trapped["alerts"] == []
    assert trapped["violations"] == []
    assert trapped["errors"] == []
    assert trapped["console"] == []


def test_a_post_from_the_editors_page_reaches_the_reader_and_edits_and_deletions_follow(blog, pages):
    editor_page, reader = pages("/blogs/storm/")
    editor_page.fill("#compose-title", "Water rising")
    editor_page.fill("#compose-body", "The river is **rising** fast.")
    editor_page.press("#compose-body", "Control+Enter")
    reader.wait_for_selector("#entries .entry[data-kind=post] >> text=Water rising")
    post = Entry.objects.get(title="Water rising")
    assert reader.inner_text(f"#entry-{post.pk} .summary strong") == "rising"
    assert editor_page.input_value("#compose-body") == ""  # published: the box is ready for the next one

    # Edit: the compose box takes the post's Markdown; saving changes it in place everywhere.
    editor_page.click(f"#entry-{post.pk} .tools button[data-action=edit]")
    editor_page.wait_for_function("() => document.getElementById('compose-body').value.includes('rising')")
    editor_page.fill("#compose-body", "The river is *falling* again.")
    editor_page.keyboard.press("Control+Enter")
    reader.wait_for_selector(f"#entry-{post.pk} .summary em >> text=falling")
    assert reader.is_visible(f"#entry-{post.pk} .updated-mark")

    # Delete takes two presses (no dialog), and the post leaves every page.
    delete = f"#entry-{post.pk} .tools button[data-action=delete]"
    editor_page.click(delete)
    assert editor_page.inner_text(delete) == "Press again to delete"
    editor_page.click(delete)
    reader.wait_for_selector(f"#entry-{post.pk}", state="detached")
    editor_page.wait_for_selector(f"#entry-{post.pk}", state="detached")
    clean(reader)
    clean(editor_page)


def test_errors_show_in_place_and_keep_what_was_typed(blog, pages):
    editor_page, _ = pages("/blogs/storm/")
    editor_page.fill("#compose-title", "Only a title")
    editor_page.press("#compose-title", "Control+Enter")
    assert editor_page.inner_text("#compose-error") == "Write something first: the post is empty."
    editor_page.fill("#compose-body", "x" * 20_001)
    editor_page.click("#compose-publish")
    editor_page.wait_for_selector("#compose-error >> text=at most 20000 characters")
    assert editor_page.input_value("#compose-title") == "Only a title"
    assert not Entry.objects.filter(title="Only a title").exists()


def test_the_preview_shows_the_rendered_post_and_publishes_nothing(blog, pages):
    editor_page, _ = pages("/blogs/storm/")
    editor_page.fill("#compose-body", "Some *words* and <script>alert(1)</script>")
    editor_page.click("#compose-preview-button")
    editor_page.wait_for_selector("#compose-preview em >> text=words")
    assert "<script>" in editor_page.inner_text("#compose-preview")  # shown as text
    assert not Entry.objects.filter(blog=blog).exists()
    clean(editor_page)


def test_a_pin_moves_the_item_into_the_pinned_block_without_moving_the_readers_place(blog, writes, pages):
    writes(publish, blog.wire, *[f"old {n}" for n in range(1, 31)])
    editor_page, reader = pages("/blogs/storm/", viewport={"width": 1000, "height": 700})
    target = Entry.objects.get(title="old 28")
    reading = f"#entry-{Entry.objects.get(title='old 15').pk}"
    reader.eval_on_selector(reading, "node => window.scrollTo(0, node.offsetTop - 200)")
    reader.wait_for_timeout(100)
    before = reader.eval_on_selector(reading, "node => node.getBoundingClientRect().top")

    editor_page.click(f"#entry-{target.pk} .tools button[data-action=pin]")
    reader.wait_for_selector(f"#pinned-{target.pk}")
    assert reader.is_visible("#pinned")
    assert reader.inner_text(f"#pinned-{target.pk} .title") == "old 28"
    after = reader.eval_on_selector(reading, "node => node.getBoundingClientRect().top")
    assert abs(after - before) < 1
    editor_page.wait_for_selector(f"#entry-{target.pk} .tools button[data-action=unpin]")

    # Unpinned, it leaves the block; still nothing moves under the reader.
    editor_page.click(f"#entry-{target.pk} .tools button[data-action=unpin]")
    reader.wait_for_selector(f"#pinned-{target.pk}", state="detached")
    assert reader.is_hidden("#pinned")
    assert abs(reader.eval_on_selector(reading, "node => node.getBoundingClientRect().top") - before) < 1
    clean(reader)


def test_a_key_event_appears_in_the_list_and_its_link_scrolls_to_the_item(blog, writes, pages, editor):
    writes(publish, blog.wire, *[f"e{n}" for n in range(1, 31)])
    editor_page, reader = pages("/blogs/storm/", viewport={"width": 1000, "height": 700})
    target = Entry.objects.get(title="e5")
    editor_page.click(f"#entry-{target.pk} .tools button[data-action=key-event]")
    link = f'#key-events-list li[data-id="{target.pk}"] a'
    reader.wait_for_selector(link)
    assert reader.inner_text(link) == "e5"
    assert reader.is_visible("#key-events")
    reader.click(link)
    reader.wait_for_function(
        "id => { const r = document.getElementById(id).getBoundingClientRect();"
        " return r.top >= 0 && r.top < window.innerHeight / 2; }",
        arg=f"entry-{target.pk}",
    )
    assert reader.evaluate("document.activeElement.id") == f"entry-{target.pk}"
    # The list is collapsible without script: a <details> element.
    assert reader.eval_on_selector("#key-events", "node => node.tagName") == "DETAILS"
    clean(reader)


def test_a_held_entry_waits_in_the_editors_queue_until_approved_and_a_rejected_one_never_shows(
    blog, writes, pages, stack, feed_server
):
    # A real source, fetched by the worker on the beat's schedule.
    url = feed_server.route("/agency.xml", rss(("rumour", "rumour"), ("fact", "fact"), title="Agency"))
    agency = Feed.objects.create(url=url, title="Agency", interval=5)
    writes(add_source, blog, agency, hold=True)
    writes(publish, blog.wire, "wire 1")
    editor_page, reader = pages("/blogs/storm/")
    stack.worker()
    stack.beat()
    editor_page.wait_for_function(
        "() => document.getElementById('queue-count').textContent === '2'", timeout=30_000
    )
    assert editor_page.locator("#queue-list li").all_inner_texts()[0].startswith("Agency")
    for page in (editor_page, reader):
        assert page.locator("#entries >> text=fact").count() == 0

    fact, rumour = Entry.objects.get(title="fact"), Entry.objects.get(title="rumour")
    editor_page.click(f'#queue-list li[data-id="{fact.pk}"] button[data-decision=approve]')
    reader.wait_for_selector(f"#entry-{fact.pk}")
    assert reader.locator("#entries .entry .title").first.inner_text() == "fact"  # new, on top
    editor_page.click(f'#queue-list li[data-id="{rumour.pk}"] button[data-decision=reject]')
    editor_page.wait_for_function("() => document.getElementById('queue-count').textContent === '0'")

    # The source changes the rejected entry and the worker fetches it again: it reaches no one.
    fetched = Feed.objects.get(pk=agency.pk).fetch_count
    feed_server.route("/agency.xml", rss(("rumour", "rumour, again"), ("fact", "fact"), title="Agency"))
    wait_until(lambda: Feed.objects.get(pk=agency.pk).fetch_count > fetched + 1, 30, what="another fetch")
    writes(publish, blog.wire, "wire 2")
    reader.wait_for_selector("#entries >> text=wire 2")
    assert reader.locator(f"#entry-{rumour.pk}").count() == 0
    assert editor_page.inner_text("#queue-count") == "0"
    reader.reload()
    reader.wait_for_selector(LIVE)
    assert reader.locator(f"#entry-{rumour.pk}").count() == 0
    assert Entry.objects.get(pk=rumour.pk).review == "rejected"


def test_the_anonymous_page_has_no_editor_markup_or_script(blog, writes, pages):
    writes(publish, blog.wire, "e1")
    editor_page, reader = pages("/blogs/storm/")
    scripts = reader.eval_on_selector_all("script", "nodes => nodes.map(n => n.src)")
    assert [src.split("/")[-1].split(".")[0] for src in scripts] == ["live", "marks"]
    html = reader.content()
    for marker in ('id="editor"', "compose", "csrfmiddlewaretoken", "editor.js", 'class="tools"'):
        assert marker not in html
    assert editor_page.locator("#compose").count() == 1
    assert editor_page.locator("#entries .entry .tools").count() == 1
    # The same policy for both: no inline script, Trusted Types.
    headers = reader.evaluate("fetch(location.href).then(r => r.headers.get('content-security-policy'))")
    assert "script-src 'self';" in headers
    assert "require-trusted-types-for 'script'" in headers


def test_a_post_with_script_payloads_runs_nothing(blog, writes, pages, editor):
    editor_page, reader = pages("/blogs/storm/")
    payloads = (
        "<script>alert(1)</script> <img src=x onerror=alert(2)> [a](javascript:alert(3)) "
        "<svg onload=alert(4)> ![x](javascript:alert(5)) <iframe src=javascript:alert(6)>"
        " [b](data:text/html,<script>alert(7)</script>)"
    )
    writes(
        actions.create_post, blog, editor, title="<b onmouseover=alert(8)>T</b>", body=payloads, via="test"
    )
    post = Entry.objects.get(blog=blog)
    for page in (reader, editor_page):
        page.wait_for_selector(f"#entry-{post.pk}")
        page.hover(f"#entry-{post.pk} .title")
        assert (
            page.eval_on_selector_all(
                f"#entry-{post.pk} script, #entry-{post.pk} svg, #entry-{post.pk} iframe", "n => n.length"
            )
            == 0
        )
        hrefs = page.eval_on_selector_all(
            f"#entry-{post.pk} [href], #entry-{post.pk} [src]",
            "n => n.map(x => x.getAttribute('href') || x.getAttribute('src'))",
        )
        assert all(h.startswith(("http", "/")) for h in hrefs), hrefs
        clean(page)
    reader.reload()
    reader.wait_for_selector(f"#entry-{post.pk}")
    clean(reader)


def test_screenshots_of_the_editors_workflow(blog, writes, pages, editor, tmp_path):
    """Compose, pin and the queue, as the README shows them: written to docs/ only with
    LIVELOG_SCREENSHOTS=1, else to a temporary directory (they are still taken and checked)."""
    import os
    from pathlib import Path

    target = (
        Path(__file__).resolve().parent.parent / "docs" if os.environ.get("LIVELOG_SCREENSHOTS") else tmp_path
    )
    agency = Feed.objects.create(url="https://example.com/agency.xml", title="Agency")
    writes(add_source, blog, agency, hold=True)
    writes(publish, blog.wire, "Flood warning raised for the lower valley", "Bridge closed to traffic")
    summary = writes(
        actions.create_post,
        blog,
        editor,
        title="What we know so far",
        body="- The river peaked at **4.2 m** at noon.\n- Two shelters are open.\n- No injuries reported.",
        via="test",
    )
    writes(actions.mark, blog, summary.pk, editor, "pin", via="test")
    writes(
        actions.mark,
        blog,
        Entry.objects.get(title="Bridge closed to traffic").pk,
        editor,
        "key-event",
        via="test",
    )
    writes(publish, agency, "Unconfirmed: levee breach reported upstream")
    editor_page, reader = pages("/blogs/storm/", viewport={"width": 1000, "height": 1100})
    editor_page.wait_for_function("() => document.getElementById('queue-count').textContent === '1'")
    editor_page.fill("#compose-title", "Evacuation")
    editor_page.fill("#compose-body", "Residents of the **lower valley** are asked to leave by 6 pm.")
    editor_page.click("#compose-preview-button")
    editor_page.wait_for_selector("#compose-preview strong")
    shots = {
        "editors-compose.png": editor_page,
        "editors-reader.png": reader,
    }
    for name, page in shots.items():
        page.screenshot(path=str(target / name))
    editor_page.locator("#queue").screenshot(path=str(target / "editors-queue.png"))
    for name in (*shots, "editors-queue.png"):
        assert (target / name).stat().st_size > 3_000
