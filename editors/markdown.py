"""Post bodies: Markdown (CommonMark) to HTML, then the feed summaries' sanitizer.

Raw HTML is off in the parser, so `<script>` in a body is text; the output still goes through the
same nh3 allowlist as every feed summary, so a link or image URL the parser let through (it
refuses javascript: and most data: URLs itself) is held to the same rules. One sanitizer.
"""

from markdown_it import MarkdownIt

from feeds.sanitizing import sanitize_html

_parser = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})


def render(body: str) -> str:
    return sanitize_html(_parser.render(body or ""))
