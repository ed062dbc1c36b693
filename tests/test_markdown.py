"""Post bodies: Markdown through markdown-it-py, raw HTML off, then the feed summaries' sanitizer."""

from editors.markdown import render


def test_markdown_renders_the_common_things():
    html = render("# Head\n\nSome *em* and **strong**, a [link](https://example.com/a).\n\n- one\n- two")
    assert "<h1>Head</h1>" in html
    assert "<em>em</em>" in html
    assert "<strong>strong</strong>" in html
    assert '<a href="https://example.com/a" rel="noopener noreferrer nofollow">link</a>' in html
    assert "<li>one</li>" in html


def test_images_by_url_are_kept_with_the_summaries_attributes():
    html = render("![A map](https://example.com/map.png)")
    assert '<img src="https://example.com/map.png" alt="A map"' in html


def test_raw_html_and_script_urls_never_become_markup():
    html = render(
        "<script>alert(1)</script>\n\n<img src=x onerror=alert(1)>\n\n[x](javascript:alert(1))"
        "\n\n[y](data:text/html,<script>alert(1)</script>)\n\n<svg onload=alert(1)>"
    )
    assert "<script" not in html
    assert "<img" not in html
    assert "<svg" not in html
    assert 'href="javascript' not in html
    assert 'href="data' not in html
    assert "&lt;script&gt;" in html  # shown as text, as the editor typed it


def test_the_same_allowlist_as_feed_summaries_applies():
    from feeds.sanitizing import sanitize_html

    source = "Table? | a |\n|---|---|\n\n`code` and\n\n    pre"
    assert render(source) == sanitize_html(render(source))
