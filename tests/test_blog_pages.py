"""A blog's pages: its header, sources and permalinks; /blogs/; an ended blog served as an archive."""

import pytest

from blogs.models import Blog, add_source, end_blog
from feeds.models import Feed
from feeds.store import store
from tests.factories import document, item

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("static_files")]


@pytest.fixture
def blogs():
    shared = Feed.objects.create(url="https://example.com/shared.xml")
    own = Feed.objects.create(url="https://example.com/own.xml")
    elsewhere = Feed.objects.create(url="https://example.com/else.xml")
    store(shared, document(item("s1"), title="Shared"))
    store(own, document(item("o1"), title="Own"))
    store(elsewhere, document(item("e1"), title="Elsewhere"))
    blog = Blog.objects.create(
        slug="election",
        title="Election night",
        description="Results as they come",
        image_url="https://img.example/x.png",
    )
    add_source(blog, shared)
    add_source(blog, own)
    other = Blog.objects.create(slug="match", title="The match")
    add_source(other, elsewhere)
    return blog, other, shared, own, elsewhere


def test_a_blog_page_shows_its_header_its_sources_entries_and_blog_permalinks(client, blogs):
    blog, _, shared, own, elsewhere = blogs
    response = client.get("/blogs/election/")
    html = response.content.decode()
    assert response.status_code == 200
    assert '<h1 id="blog-title">Election night</h1>' in html
    assert "Results as they come" in html
    assert '<meta property="og:title" content="Election night">' in html
    assert '<meta property="og:image" content="https://img.example/x.png">' in html
    assert 'data-blog="election"' in html
    assert "Title s1" in html
    assert "Title o1" in html
    assert "Title e1" not in html
    assert f'href="/blogs/election/?feed={own.pk}"' in html
    entry = own.entries.get()
    assert f'href="/blogs/election/entries/{entry.pk}/"' in html
    # The filter lists the blog's sources only.
    assert f'<option value="{elsewhere.pk}"' not in html
    assert "Cache-Control" not in response or "public" not in response["Cache-Control"]
    assert client.get(f"/blogs/election/entries/{entry.pk}/").status_code == 200
    other_entry = elsewhere.entries.get()
    assert client.get(f"/blogs/election/entries/{other_entry.pk}/").status_code == 404
    assert client.get("/blogs/nope/").status_code == 404
    filtered = client.get(f"/blogs/election/?feed={own.pk}").content.decode()
    assert "Title o1" in filtered
    assert "Title s1" not in filtered


def test_the_river_links_to_live_blogs_and_blogs_lists_them_live_first(client, blogs):
    blog, other, *_ = blogs
    end_blog(other)
    river = client.get("/").content.decode()
    assert 'href="/blogs/election/"' in river
    assert 'href="/blogs/"' in river
    listing = client.get("/blogs/").content.decode()
    assert listing.index("Election night") < listing.index("The match")
    assert "Newest: " in listing
    assert "/static/live/blogs." in listing


def test_an_ended_blog_is_served_with_validators_and_answers_304(client, blogs):
    blog, _, shared, own, _ = blogs
    end_blog(blog)
    response = client.get("/blogs/election/")
    assert response.status_code == 200
    assert "data-ended" in response.content.decode()
    assert "public" in response["Cache-Control"]
    assert "s-maxage" in response["Cache-Control"]
    etag, modified = response["ETag"], response["Last-Modified"]
    assert client.get("/blogs/election/", HTTP_IF_NONE_MATCH=etag).status_code == 304
    assert client.get("/blogs/election/", HTTP_IF_MODIFIED_SINCE=modified).status_code == 304
    api = client.get("/api/entries/?blog=election")
    assert client.get("/api/entries/?blog=election", HTTP_IF_NONE_MATCH=api["ETag"]).status_code == 304
    # Entries after its end are not its; a correction to one of its entries changes the validator.
    store(own, document(item("o2"), title="Own"))
    assert "Title o2" not in client.get("/blogs/election/").content.decode()
    assert client.get("/blogs/election/", HTTP_IF_NONE_MATCH=etag).status_code == 304
    store(own, document(item("o1", title="Corrected"), item("o2"), title="Own"))
    assert client.get("/blogs/election/", HTTP_IF_NONE_MATCH=etag).status_code == 200
