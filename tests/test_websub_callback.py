"""The WebSub callback (verification of intent and content distribution) and subscription planning."""

import hashlib
import hmac
import json
import secrets
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from feeds import websub
from feeds.models import Entry, Feed, Subscription
from tests.feedserver import rss

# The callback does its database work on pool threads (feeds/views.py): they see committed rows only.
pytestmark = [pytest.mark.django_db(transaction=True)]

TOPIC = "https://example.com/feed.xml"
HUB = "https://hub.example.com/"


def subscription(state=Subscription.State.ACTIVE, pending="", lease=timedelta(hours=1), **fields):
    feed = fields.pop("feed", None) or Feed.objects.create(url=TOPIC, hubs=[HUB], topic=TOPIC)
    now = timezone.now()
    return Subscription.objects.create(
        feed=feed,
        hub=HUB,
        topic=TOPIC,
        token=secrets.token_urlsafe(32),
        secret=secrets.token_urlsafe(48),
        state=state,
        pending=pending,
        lease_expires_at=now + lease if state == Subscription.State.ACTIVE else None,
        **fields,
    )


def url(sub):
    return f"/websub/{sub.token}/"


def signed(sub, body: bytes, algorithm="sha256", secret=None) -> str:
    key = (secret or sub.secret).encode()
    return f"{algorithm}={hmac.new(key, body, getattr(hashlib, algorithm)).hexdigest()}"


def push(client, sub, body: bytes, signature: str | None = None):
    headers = {} if signature == "" else {"X-Hub-Signature": signature or signed(sub, body)}
    return client.post(url(sub), data=body, content_type="application/rss+xml", headers=headers)


BODY = rss(("p1", "Pushed one"), ("p2", "Pushed two")).encode()


# Verification of intent


def test_it_answers_the_challenge_of_the_pending_subscription_and_records_the_lease(client):
    sub = subscription(state=Subscription.State.REQUESTED, pending="subscribe")
    params = {
        "hub.mode": "subscribe",
        "hub.topic": TOPIC,
        "hub.challenge": "c-123",
        "hub.lease_seconds": "600",
    }
    response = client.get(url(sub), params)
    assert response.status_code == 200
    assert response.content == b"c-123"
    sub.refresh_from_db()
    assert sub.state == Subscription.State.ACTIVE
    assert sub.pending == ""
    assert sub.lease_seconds == 600
    assert timedelta(seconds=590) < sub.lease_expires_at - timezone.now() <= timedelta(seconds=600)
    # Renewed at 80% of the lease.
    assert timedelta(seconds=470) < sub.next_action_at - timezone.now() <= timedelta(seconds=480)
    sub.feed.refresh_from_db()
    assert sub.feed.pushed_until == sub.lease_expires_at


@pytest.mark.parametrize(
    ("mode", "topic", "pending"),
    [
        ("subscribe", "https://example.com/other.xml", "subscribe"),  # a topic never requested
        ("unsubscribe", TOPIC, "subscribe"),  # the wrong mode
        ("subscribe", TOPIC, ""),  # nothing pending
    ],
)
def test_it_refuses_a_challenge_it_did_not_ask_for(client, mode, topic, pending):
    sub = subscription(state=Subscription.State.REQUESTED, pending=pending)
    response = client.get(url(sub), {"hub.mode": mode, "hub.topic": topic, "hub.challenge": "xyzzy"})
    assert response.status_code == 404
    assert b"xyzzy" not in response.content
    sub.refresh_from_db()
    assert sub.state == Subscription.State.REQUESTED
    assert sub.verified_at is None


def test_an_unknown_callback_answers_no_challenge(client):
    response = client.get(
        "/websub/nope/", {"hub.mode": "subscribe", "hub.topic": TOPIC, "hub.challenge": "c"}
    )
    assert response.status_code == 404


def test_an_unsubscription_is_confirmed_only_while_pending(client):
    sub = subscription(pending="unsubscribe")
    params = {"hub.mode": "unsubscribe", "hub.topic": TOPIC, "hub.challenge": "bye"}
    assert client.get(url(sub), params).content == b"bye"
    sub.refresh_from_db()
    assert sub.state == Subscription.State.UNSUBSCRIBED
    assert client.get(url(sub), params).status_code == 404


def test_a_denial_is_recorded_and_retried_later(client):
    sub = subscription(state=Subscription.State.REQUESTED, pending="subscribe")
    params = {"hub.mode": "denied", "hub.topic": TOPIC, "hub.reason": "no thanks"}
    assert client.get(url(sub), params).status_code == 200
    sub.refresh_from_db()
    assert sub.error_count == 1
    assert "no thanks" in sub.last_error
    assert sub.next_action_at > timezone.now() + timedelta(seconds=30)


# Content distribution


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha384", "sha512"])
def test_a_signed_push_is_stored_like_a_fetch(client, algorithm):
    sub = subscription()
    response = push(client, sub, BODY, signed(sub, BODY, algorithm))
    assert response.status_code == 204
    assert sorted(Entry.objects.values_list("title", flat=True)) == ["Pushed one", "Pushed two"]
    sub.refresh_from_db()
    assert sub.push_count == 1
    assert sub.last_push_at is not None
    # The same push again (the hub retried): nothing new.
    assert push(client, sub, BODY).status_code == 204
    assert Entry.objects.count() == 2


@pytest.mark.parametrize(
    ("signature", "outcome"),
    [
        ("forged", "bad_signature"),
        ("md5", "bad_algorithm"),
        ("", "unsigned"),
        ("other-secret", "bad_signature"),
        ("truncated", "bad_signature"),
    ],
)
def test_a_push_without_a_valid_signature_is_ignored_and_recorded(client, signature, outcome):
    sub = subscription()
    header = {
        "forged": "sha256=" + "0" * 64,
        "md5": "md5=" + hashlib.md5(BODY).hexdigest(),  # noqa: S324
        "": "",
        "other-secret": signed(sub, BODY, secret="not-the-secret"),
        "truncated": signed(sub, BODY)[:-2],
    }[signature]
    response = push(client, sub, BODY, header)
    # 2xx as the specification advises: a forger learns nothing from the answer.
    assert response.status_code == 202
    assert response.content.decode() == outcome
    assert Entry.objects.count() == 0
    sub.refresh_from_db()
    assert sub.refused_count == 1
    assert "push refused" in sub.last_error
    assert sub.push_count == 0


def test_the_signature_covers_the_exact_body(client):
    sub = subscription()
    header = signed(sub, BODY)
    assert push(client, sub, BODY + b" ", header).status_code == 202
    assert Entry.objects.count() == 0


@pytest.mark.parametrize(
    "case", ["unknown", "unsubscribed", "expired", "lease over", "feed removed", "disabled"]
)
def test_a_push_to_a_callback_that_is_gone_answers_410(client, case):
    sub = subscription()
    if case == "unsubscribed":
        Subscription.objects.filter(pk=sub.pk).update(state=Subscription.State.UNSUBSCRIBED)
    elif case == "expired":
        Subscription.objects.filter(pk=sub.pk).update(state=Subscription.State.EXPIRED)
    elif case == "lease over":
        Subscription.objects.filter(pk=sub.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    elif case == "feed removed":
        sub.feed.delete()
    elif case == "disabled":
        Feed.objects.filter(pk=sub.feed_id).update(enabled=False)
    target = "/websub/unknown-token/" if case == "unknown" else url(sub)
    response = client.post(
        target, data=BODY, content_type="application/rss+xml", headers={"X-Hub-Signature": signed(sub, BODY)}
    )
    assert response.status_code == 410
    assert Entry.objects.count() == 0


def test_an_oversized_push_is_refused(client, settings):
    settings.FEEDS_MAX_BYTES = 1000
    sub = subscription()
    body = rss(*[(f"g{n}", "x" * 50) for n in range(30)]).encode()
    assert len(body) > 1000
    assert push(client, sub, body).status_code == 413
    assert Entry.objects.count() == 0


def test_pushed_content_that_is_not_a_feed_is_recorded(client):
    sub = subscription()
    body = b"<html><body>not a feed</body></html>"
    assert push(client, sub, body).status_code == 202
    sub.refresh_from_db()
    assert "pushed content refused" in sub.last_error
    assert Entry.objects.count() == 0


# When a subscription is possible at all


@pytest.mark.parametrize(
    ("site_url", "private", "allowed", "why"),
    [
        ("https://live.example.com", False, ["live.example.com"], "resolve"),  # no such name here
        ("http://127.0.0.1:8000", False, ["127.0.0.1"], "not an https URL"),
        ("https://127.0.0.1:8000", False, ["127.0.0.1"], "not a public address"),
        ("https://github.com/livelog/livelog", False, ["live.example.com"], "not in ALLOWED_HOSTS"),
        ("http://127.0.0.1:8000", True, ["127.0.0.1"], ""),
    ],
)
def test_it_subscribes_only_when_a_hub_can_reach_site_url(settings, site_url, private, allowed, why):
    settings.SITE_URL = site_url
    settings.FEEDS_ALLOW_PRIVATE_NETWORKS = private
    settings.ALLOWED_HOSTS = allowed
    reason = websub.why_not_pushed()
    assert (why in reason) if why else reason == ""


def test_planning_subscribes_feeds_that_name_a_hub_and_only_those(settings):
    settings.SITE_URL, settings.ALLOWED_HOSTS = "http://127.0.0.1:8000", ["127.0.0.1"]
    settings.FEEDS_ALLOW_PRIVATE_NETWORKS = True
    pushed = Feed.objects.create(url=TOPIC, hubs=[HUB], topic=TOPIC)
    Feed.objects.create(url="https://example.com/plain.xml")
    Feed.objects.create(
        url="https://example.com/off.xml", hubs=[HUB], topic="https://example.com/off.xml", enabled=False
    )
    due = websub.maintain()
    sub = Subscription.objects.get()
    assert (sub.feed, sub.hub, sub.topic, sub.pending) == (pushed, HUB, TOPIC, "subscribe")
    assert due == [sub.pk]
    assert len(sub.token) >= 43
    assert len(sub.secret) >= 43
    # Claimed: the next tick does not send the request again.
    assert websub.maintain() == []
    assert Subscription.objects.count() == 1


def test_no_subscription_without_a_reachable_site_url(settings):
    settings.SITE_URL = "https://github.com/livelog/livelog"
    Feed.objects.create(url=TOPIC, hubs=[HUB], topic=TOPIC)
    assert websub.maintain() == []
    assert not Subscription.objects.exists()


def test_a_disabled_or_removed_feed_is_unsubscribed(settings):
    settings.SITE_URL = "https://github.com/livelog/livelog"  # nothing new is subscribed meanwhile
    active = subscription()
    requested = subscription(
        state=Subscription.State.REQUESTED,
        pending="subscribe",
        feed=Feed.objects.create(url="https://example.com/b.xml", hubs=[HUB], topic=TOPIC),
    )
    Feed.objects.update(enabled=False)
    due = websub.maintain()
    active.refresh_from_db()
    requested.refresh_from_db()
    assert active.pending == "unsubscribe"
    assert due == [active.pk]
    assert requested.state == Subscription.State.UNSUBSCRIBED  # never verified: nothing to tell the hub


def test_a_lease_that_runs_out_expires(settings):
    settings.SITE_URL = "https://github.com/livelog/livelog"
    sub = subscription(lease=timedelta(seconds=-1))
    websub.maintain()
    sub.refresh_from_db()
    assert sub.state == Subscription.State.EXPIRED


def test_a_hub_request_goes_through_the_fetch_guard(settings):
    settings.FEEDS_ALLOW_PRIVATE_NETWORKS = False
    sub = subscription(state=Subscription.State.REQUESTED, pending="subscribe")
    Subscription.objects.filter(pk=sub.pk).update(hub="http://127.0.0.1:9/")
    assert "not a public address" in websub.send_request(sub.pk)
    sub.refresh_from_db()
    assert sub.error_count == 1
    assert "not a public address" in sub.last_error
    first_wait = sub.next_action_at - timezone.now()
    websub.send_request(sub.pk)
    sub.refresh_from_db()
    assert sub.error_count == 2
    assert sub.next_action_at - timezone.now() > first_wait  # backing off


# Discovery, from every fetch


def test_rss_and_atom_name_their_hubs_and_self():
    from feeds.parsing import parse

    rss_doc = (
        b'<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom"><channel><title>T</title>'
        b'<atom:link rel="hub" href="https://hub.example.com/"/><atom:link rel="hub" href="/second-hub"/>'
        b'<atom:link rel="self" href="https://example.com/feed.xml"/>'
        b'<atom:link rel="hub" href="javascript:x"/>'
        b"<item><guid>1</guid><title>One</title></item></channel></rss>"
    )
    parsed = parse(rss_doc, url="https://example.com/rss")
    assert parsed.hubs == ["https://hub.example.com/", "https://example.com/second-hub"]
    assert parsed.self_url == "https://example.com/feed.xml"
    atom = (
        b'<feed xmlns="http://www.w3.org/2005/Atom"><title>T</title><id>urn:x</id>'
        b'<link rel="hub" href="https://hub.example.com/"/><link rel="self" href="https://example.com/atom"/>'
        b"<entry><id>1</id><title>One</title></entry></feed>"
    )
    parsed = parse(atom, url="https://example.com/atom")
    assert (parsed.hubs, parsed.self_url) == (["https://hub.example.com/"], "https://example.com/atom")


def test_a_json_feed_names_its_websub_hubs():
    from feeds.parsing import parse

    doc = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "T",
        "feed_url": "https://example.com/feed.json",
        "hubs": [
            {"type": "rssCloud", "url": "https://cloud.example.com/"},
            {"type": "WebSub", "url": HUB},
            "x",
        ],
        "items": [{"id": "1", "content_text": "one"}],
    }
    parsed = parse(json.dumps(doc).encode(), url="https://example.com/feed.json")
    assert (parsed.hubs, parsed.self_url) == ([HUB], "https://example.com/feed.json")


def test_link_headers_win_over_the_document(feed_server, allow_private):
    from feeds.ingest import fetch_and_store

    body = (
        '<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom"><channel><title>T</title>'
        '<atom:link rel="hub" href="https://doc-hub.example.com/"/>'
        "<item><guid>1</guid><title>One</title></item></channel></rss>"
    )
    link = '<https://header-hub.example.com/>; rel="hub", <https://example.com/canonical.xml>; rel="self"'
    feed = Feed.objects.create(url=feed_server.route("/h.xml", body, headers={"Link": link}))
    assert str(fetch_and_store(feed.pk)) == "1 new, 0 updated"
    feed.refresh_from_db()
    assert feed.hubs == ["https://header-hub.example.com/"]
    assert feed.topic == "https://example.com/canonical.xml"
    # Without headers the document's hub counts; without a self URL the feed is its own topic.
    feed_server.route("/h.xml", body.replace("<guid>1", "<guid>2"))
    fetch_and_store(feed.pk)
    feed.refresh_from_db()
    assert (feed.hubs, feed.topic) == (["https://doc-hub.example.com/"], feed.url)
    # A feed that stops naming a hub loses it.
    feed_server.route("/h.xml", body.replace("doc-hub", "x").replace('rel="hub"', 'rel="other"'))
    fetch_and_store(feed.pk)
    feed.refresh_from_db()
    assert (feed.hubs, feed.topic) == ([], "")


# Polling as the safety net


def test_a_pushed_feed_is_polled_at_the_longer_interval(settings):
    from feeds.schedule import claim_due_feeds

    settings.FEEDS_PUSHED_INTERVAL = 60
    now = timezone.now()
    pushed = Feed.objects.create(url=TOPIC, pushed_until=now + timedelta(hours=1), next_fetch_at=now)
    lapsed = Feed.objects.create(
        url="https://example.com/b", pushed_until=now - timedelta(seconds=1), next_fetch_at=now
    )
    plain = Feed.objects.create(url="https://example.com/c", next_fetch_at=now)
    assert sorted(claim_due_feeds()) == sorted([(pushed.pk, 60), (lapsed.pk, 5), (plain.pk, 5)])
    pushed.refresh_from_db()
    assert pushed.next_fetch_at - now > timedelta(seconds=59)


def test_what_a_poll_finds_before_the_push_is_counted_against_the_hub(feed_server, allow_private):
    from feeds.ingest import fetch_and_store

    sub = subscription()
    url = feed_server.route("/missed.xml", rss(("m1", "Missed")))
    Feed.objects.filter(pk=sub.feed_id).update(url=url, pushed_until=sub.lease_expires_at)
    assert str(fetch_and_store(sub.feed_id)) == "1 new, 0 updated"
    sub.refresh_from_db()
    assert sub.missed_count == 1
    assert sub.demoted_at is not None
    assert Feed.objects.get(pk=sub.feed_id).pushed_until is None
    # A push that brings something new first promotes the hub again.
    client = Client()
    body = rss(("m2", "Pushed first"), ("m1", "Missed")).encode()
    assert push(client, sub, body).status_code == 204
    sub.refresh_from_db()
    assert sub.demoted_at is None
    assert Feed.objects.get(pk=sub.feed_id).pushed_until == sub.lease_expires_at


# Seen from outside


@pytest.mark.usefixtures("static_files")
def test_the_health_page_shows_push_state_hub_lease_last_push_and_misses(admin_client, settings):
    settings.SITE_URL = "https://github.com/livelog/livelog"
    sub = subscription(missed_count=2, last_push_at=timezone.now())
    Feed.objects.create(
        url="https://example.com/waiting.xml", hubs=[HUB], topic="https://example.com/waiting.xml"
    )
    Feed.objects.create(url="https://example.com/plain.xml")
    page = admin_client.get("/admin/feeds/feed/health/").content.decode()
    row = page[page.index(f"/admin/feeds/feed/{sub.feed_id}/change/") :].split("</tr>")[0]
    assert '<td class="push">pushed' in row
    assert HUB in row
    assert sub.lease_expires_at.strftime("%Y-%m-%d %H:%M") in row
    assert "<td>2</td>" in row
    # Why the other feed is not pushed: no hub can reach this site.
    assert "not pushed: SITE_URL (https://github.com/livelog/livelog) is not this site" in page
    assert "not pushed: the feed names no hub" in page
    # The change form shows the same, and never the secret.
    form = admin_client.get(f"/admin/feeds/feed/{sub.feed_id}/change/").content.decode()
    assert "pushed" in form
    assert HUB in form
    listing = admin_client.get(f"/admin/feeds/subscription/{sub.pk}/change/").content.decode()
    assert sub.secret not in listing
    assert sub.token not in listing
