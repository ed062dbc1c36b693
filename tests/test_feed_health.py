"""Feed health, OPML import and export, and hand-edited entries in the admin."""

import hashlib
from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from feeds import health, opml
from feeds.models import Entry, Feed
from feeds.store import store
from tests.factories import document, item

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("static_files")]

HEALTH = "/admin/feeds/feed/health/"
EXPORT = "/admin/feeds/feed/opml/export/"
IMPORT = "/admin/feeds/feed/opml/import/"


def make_feed(name, *, age=timedelta(days=30), **fields):
    fields.setdefault("fetch_count", 10)
    feed = Feed.objects.create(url=f"http://127.0.0.1:9/{name}.xml", title=name, **fields)
    Feed.objects.filter(pk=feed.pk).update(created_at=timezone.now() - age)
    feed.refresh_from_db()
    return feed


def add_entries(feed, *ages):
    """One entry per age, first seen that long ago."""
    now = timezone.now()
    for n, age in enumerate(ages):
        key = hashlib.sha256(f"{feed.pk}-{n}-{age}".encode()).hexdigest()
        Entry.objects.create(feed=feed, key=key, published=now - age, updated=now - age, first_seen=now - age)


def days(*numbers):
    return [timedelta(days=n) for n in numbers]


def opml_file(*urls, name="feeds.opml"):
    outlines = "".join(f'<outline text="t" xmlUrl="{url}"/>' for url in urls)
    content = f'<?xml version="1.0"?><opml version="2.0"><body>{outlines}</body></opml>'.encode()
    return SimpleUploadedFile(name, content, content_type="text/x-opml")


def messages_of(response):
    return [str(message) for message in get_messages(response.wsgi_request)]


# The health page


def test_the_health_page_lists_paused_then_erroring_then_waiting_then_stale_then_healthy(admin_client):
    now = timezone.now()
    make_feed("healthy")
    add_entries(Feed.objects.get(title="healthy"), *days(0, 1, 2, 3))
    make_feed("off", enabled=False, next_fetch_reason=Feed.Why.DISABLED)
    stale = make_feed("stale")  # a new entry every day for three weeks, then nothing for nine days
    add_entries(stale, *days(*range(9, 30)))
    make_feed("two-errors", error_count=2, last_error="HTTP 500", next_fetch_reason=Feed.Why.BACKOFF)
    make_feed("waiting", next_fetch_reason=Feed.Why.RETRY_AFTER, next_fetch_at=now + timedelta(hours=1))
    make_feed("paused", error_count=10, last_error="HTTP 404", next_fetch_reason=Feed.Why.PAUSED)
    make_feed("five-errors", error_count=5, last_error="timed out", next_fetch_reason=Feed.Why.BACKOFF)

    response = admin_client.get(HEALTH)

    assert response.status_code == 200
    rows = response.context["rows"]
    assert [row.feed.title for row in rows] == [
        "paused",
        "five-errors",
        "two-errors",
        "waiting",
        "stale",
        "healthy",
        "off",
    ]
    assert [row.state for row in rows] == [
        "paused",
        "erroring",
        "erroring",
        "waiting",
        "stale",
        "healthy",
        "disabled",
    ]
    page = response.content.decode()
    assert (
        page.index(">paused<") < page.index(">five-errors<") < page.index(">stale<") < page.index(">healthy<")
    )
    assert "no new entry for 1\xa0week (usually every 1\xa0day)" in page
    assert "timed out" in page


def test_a_feed_quiet_for_its_usual_gap_is_not_stale():
    weekly = make_feed("weekly", age=timedelta(days=76))  # one entry a week; the last one six days ago
    add_entries(weekly, *days(6, 13, 20, 27, 34, 41, 48, 55, 62, 69))
    busy = make_feed("busy", age=timedelta(days=2))  # one an hour, then eight hours of silence
    add_entries(busy, *(timedelta(hours=h) for h in range(8, 48)))

    found = {row.feed.title: row for row in health.attention()}

    assert found["weekly"].state == "healthy"
    assert found["weekly"].usual_gap == pytest.approx(timedelta(days=7), abs=timedelta(hours=1))
    assert found["busy"].state == "stale"


def test_304_share_and_entries_per_day(admin_client):
    feed = make_feed("counted", fetch_count=8, not_modified_count=6)
    add_entries(feed, *(timedelta(hours=h) for h in range(1, 15)), *days(8, 9, 10, 11, 12))
    make_feed("unfetched", fetch_count=0)

    found = {row.feed.title: row for row in health.attention()}

    assert found["counted"].not_modified_share == 0.75
    assert found["counted"].entries_per_day == 2.0
    assert found["unfetched"].not_modified_share is None
    assert found["unfetched"].entries_per_day == 0
    changelist = admin_client.get("/admin/feeds/feed/").content.decode()
    assert '<td class="field-not_modified_share">75%</td>' in changelist
    assert '<td class="field-entries_per_day">2.0</td>' in changelist
    change_form = admin_client.get(f"/admin/feeds/feed/{feed.pk}/change/").content.decode()
    assert '<div class="readonly">75%</div>' in change_form
    assert '<div class="readonly">2.0</div>' in change_form


def test_the_health_page_costs_the_same_queries_for_more_feeds(admin_client):
    add_entries(make_feed("first"), *days(1, 2))
    admin_client.get(HEALTH)  # the session and the user are cached from here on
    with CaptureQueriesContext(connection) as few:
        assert admin_client.get(HEALTH).status_code == 200
    for n in range(20):
        feed = make_feed(
            f"more-{n}", error_count=n % 3, next_fetch_reason=Feed.Why.BACKOFF if n % 3 else "interval"
        )
        store(feed, document(item(f"x{n}"), item(f"y{n}")))
    with CaptureQueriesContext(connection) as many:
        response = admin_client.get(HEALTH)
    assert len(response.context["rows"]) == 21
    assert len(many) == len(few)


def test_the_feed_list_links_to_health_and_opml(admin_client):
    page = admin_client.get("/admin/feeds/feed/").content.decode()
    assert f'href="{HEALTH}"' in page
    assert f'href="{EXPORT}"' in page
    assert f'href="{IMPORT}"' in page


def test_the_add_form_has_no_health_section(admin_client):
    assert "Health" not in admin_client.get("/admin/feeds/feed/add/").content.decode()


# Staff only


@pytest.mark.parametrize("url", [HEALTH, EXPORT, IMPORT])
def test_anonymous_visitors_are_sent_to_the_login(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


@pytest.mark.parametrize("url", [HEALTH, EXPORT, IMPORT])
def test_users_who_are_not_staff_are_refused(client, django_user_model, url):
    Feed.objects.create(url="https://example.com/secret.xml")
    client.force_login(django_user_model.objects.create_user("reader", password="x"))
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert b"secret" not in response.content


@pytest.mark.parametrize("url", [HEALTH, EXPORT, IMPORT])
def test_staff_without_feed_permissions_are_refused(client, django_user_model, url):
    client.force_login(django_user_model.objects.create_user("intern", password="x", is_staff=True))
    assert client.get(url).status_code == 403


# OPML


def test_the_opml_export_is_a_download_with_every_feed(admin_client):
    urls = [f"https://example.com/{n}.xml" for n in range(3)]
    for url in urls:
        Feed.objects.create(url=url)

    response = admin_client.get(EXPORT)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/x-opml")
    assert response["Content-Disposition"] == 'attachment; filename="livelog-feeds.opml"'
    assert [url for url, _ in opml.feed_urls(response.content)] == urls


def test_an_opml_upload_adds_feeds_and_reports_existing_and_refused(admin_client, allow_private):
    Feed.objects.create(url="http://127.0.0.1:9/old.xml")
    upload = opml_file("http://127.0.0.1:9/a.xml", "http://127.0.0.1:9/old.xml", "ftp://127.0.0.1/c.xml")

    response = admin_client.post(IMPORT, {"file": upload, "interval": 60}, follow=True)

    assert response.redirect_chain == [("/admin/feeds/feed/", 302)]
    assert set(Feed.objects.values_list("url", flat=True)) == {
        "http://127.0.0.1:9/a.xml",
        "http://127.0.0.1:9/old.xml",
    }
    assert Feed.objects.get(url="http://127.0.0.1:9/a.xml").interval == 60
    said = messages_of(response)
    assert said[0] == "Added 1 feed(s): http://127.0.0.1:9/a.xml."
    assert said[1] == "1 already present: http://127.0.0.1:9/old.xml."
    assert said[2].startswith("Refused 1: ftp://127.0.0.1/c.xml (only http and https URLs are allowed")


def test_an_opml_upload_refuses_private_addresses(admin_client, settings):
    settings.FEEDS_ALLOW_PRIVATE_NETWORKS = False

    response = admin_client.post(
        IMPORT, {"file": opml_file("http://169.254.169.254/latest/meta-data/")}, follow=True
    )

    assert Feed.objects.count() == 0
    assert messages_of(response) == [
        "Added 0 feed(s).",
        "Refused 1: http://169.254.169.254/latest/meta-data/ (169.254.169.254 is not a public address).",
    ]


def test_an_opml_upload_over_the_size_cap_is_refused_unread(admin_client, allow_private, monkeypatch):
    upload = opml_file(*(f"http://127.0.0.1:9/{n}.xml" for n in range(10)))
    monkeypatch.setattr(opml, "MAX_OPML_BYTES", upload.size - 1)

    response = admin_client.post(IMPORT, {"file": upload})

    assert response.status_code == 200
    assert "The file is larger than" in response.content.decode()
    assert Feed.objects.count() == 0


def test_an_upload_that_is_not_opml_shows_why(admin_client):
    upload = SimpleUploadedFile("feeds.opml", b"<rss><channel/></rss>")
    response = admin_client.post(IMPORT, {"file": upload})
    assert response.status_code == 200
    assert "not an OPML file" in response.content.decode()
    assert Feed.objects.count() == 0


def test_an_opml_upload_without_the_csrf_token_is_refused(admin_user, allow_private):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert client.get(IMPORT).status_code == 200
    response = client.post(IMPORT, {"file": opml_file("http://127.0.0.1:9/a.xml")})
    assert response.status_code == 403
    assert Feed.objects.count() == 0


# Hand-edited entries


def test_a_hand_edited_summary_is_sanitized_on_save(admin_client):
    feed = Feed.objects.create(url="https://example.com/feed.xml")
    store(feed, document(item("a")))
    entry = Entry.objects.get()
    summary = (
        '<p onclick="steal()">Fixed <a href="/more">typo</a></p><script>alert(1)</script>'
        '<img src="https://example.com/x.png" onerror="alert(2)">'
    )
    form = {
        "title": "Edited",
        "link": entry.link,
        "author": "",
        "summary_html": summary,
        "published_0": "2026-01-01",
        "published_1": "00:00:00",
        "updated_0": "2026-01-01",
        "updated_1": "00:00:00",
    }

    response = admin_client.post(f"/admin/feeds/entry/{entry.pk}/change/", form)

    assert response.status_code == 302, response.content.decode()[:2000]
    entry.refresh_from_db()
    assert entry.title == "Edited"
    assert "<script" not in entry.summary_html
    assert "alert" not in entry.summary_html
    assert "onerror" not in entry.summary_html
    assert "onclick" not in entry.summary_html
    assert '<a href="https://example.com/more"' in entry.summary_html  # relative to the entry's link
    assert '<img src="https://example.com/x.png"' in entry.summary_html
