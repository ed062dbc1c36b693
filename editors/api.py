"""The write API for newsroom tools (and the page's editor tools): /api/blogs/<slug>/…

Answers are JSON. Posts and marked entries come back in the stream's item shape
({"type", "cursor", "entry"}), so a tool can treat them like anything it reads from the stream.
"""

import json

from django.http import HttpResponse, JsonResponse
from django.views.decorators.http import require_http_methods

from blogs.models import Blog
from editors import actions, markdown
from editors.auth import api_view, error
from live.events import entry_data, event

MAX_REQUEST = 64 * 1024


def _blog(slug):
    return Blog.objects.filter(slug=slug).first()


def _body(request) -> dict:
    if len(request.body) > MAX_REQUEST:
        raise actions.EditorialError(f"the request body must be at most {MAX_REQUEST} bytes")
    try:
        data = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise actions.EditorialError(
            "the request body must be JSON (Content-Type: application/json)"
        ) from exc
    if not isinstance(data, dict):
        raise actions.EditorialError('the request body must be a JSON object, e.g. {"body": "…"}')
    unknown = sorted(set(data) - {"title", "body"})
    if unknown:
        raise actions.EditorialError(f"unknown field(s): {', '.join(unknown)}; send title and body")
    return data


def _run(slug, action):
    """Look the blog up, run the action, and turn an EditorialError into its clear 4xx answer."""
    blog = _blog(slug)
    if blog is None:
        return error(404, f"no blog {slug!r}")
    try:
        return action(blog)
    except actions.EditorialError as exc:
        return error(exc.status, str(exc))


def _item(entry, status=200):
    return JsonResponse(event(entry), status=status)


@require_http_methods(["POST"])
@api_view("editors.post")
def posts(request, user, via, slug):
    """POST: publish a post, {"title": "…", "body": "Markdown"} -> 201 with the post as an entry."""
    return _run(slug, lambda blog: _item(actions.create_post(blog, user, **_body(request), via=via), 201))


@require_http_methods(["POST"])
@api_view("editors.post")
def preview(request, user, via, slug):
    """POST {"body": "Markdown"}: the HTML a post with this body would show; nothing is stored."""

    def render(blog):
        fields = _body(request)
        if not isinstance(fields.get("body", ""), str):
            raise actions.EditorialError("body must be a string (Markdown)")
        return JsonResponse({"summary_html": markdown.render(fields.get("body", ""))})

    return _run(slug, render)


@require_http_methods(["GET", "PATCH", "DELETE"])
@api_view("editors.post")
def post(request, user, via, slug, pk):
    """GET: the post with its Markdown `body`. PATCH: edit its title or body. DELETE: take it off
    every page (204)."""
    if request.method == "GET":

        def show(blog):
            post = actions.blog_entry(blog, pk)
            if post.kind != "post":
                raise actions.NotFound(f"no post {pk} in the blog {blog.slug!r}")
            return JsonResponse({**event(post), "body": post.body})

        return _run(slug, show)
    if request.method == "DELETE":

        def remove(blog):
            actions.delete_post(blog, pk, user, via=via)
            return HttpResponse(status=204)

        return _run(slug, remove)
    return _run(slug, lambda blog: _item(actions.edit_post(blog, pk, user, **_body(request), via=via)))


@require_http_methods(["POST"])
@api_view("editors.mark")
def mark(request, user, via, slug, pk, action):
    """POST entries/<id>/pin, /unpin, /key-event, /unkey-event: posts and feed entries alike."""
    return _run(slug, lambda blog: _item(actions.mark(blog, pk, user, action, via=via)))


@require_http_methods(["GET"])
@api_view("editors.moderate")
def queue(request, user, via, slug):
    """GET: the entries waiting for approval, oldest first."""

    def listing(blog):
        held = list(actions.held(blog)[:500])
        return JsonResponse({"count": actions.held(blog).count(), "items": [entry_data(e) for e in held]})

    return _run(slug, listing)


@require_http_methods(["POST"])
@api_view("editors.moderate")
def review(request, user, via, slug, pk, decision):
    """POST queue/<id>/approve (the entry goes out as new) or /reject (it never will)."""

    def decide(blog):
        if decision == "approve":
            return _item(actions.approve(blog, pk, user, via=via))
        entry = actions.reject(blog, pk, user, via=via)
        return JsonResponse({"id": entry.pk, "review": entry.review})

    return _run(slug, decide)
