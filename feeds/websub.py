"""WebSub (W3C Recommendation): subscribe to the hubs that feeds advertise, and take what they push.

Subscribing: a feed whose last fetch named a hub and a topic (its self URL) gets a Subscription with its
own unguessable callback (SITE_URL/websub/<token>/) and its own secret. The request to the hub goes
through the fetch guard like every outbound request. The hub then verifies our intent with a GET to
the callback: we answer its challenge only while that very request is pending (same mode, same topic)
and record the lease it granted. Leases are renewed at about 80% of their length; a feed removed,
disabled or no longer pointing at the hub is unsubscribed; a hub that fails is retried with backoff,
and meanwhile the feed is simply polled.

Content (feeds/websub_push.py): a POST to the callback is taken only with a valid X-Hub-Signature
(an HMAC of the exact body with the subscription's secret, compared in constant time) and is parsed
and stored by the same code as a fetch; an unknown, unsubscribed or expired callback answers 410.
Polling stays the safety net: what a poll finds that a push did not bring is counted against the hub.
"""

import logging
import random
import re
import secrets
from collections import Counter
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.urls import reverse
from django.utils import timezone

from feeds import stats
from feeds.fetching import FetchError, check_url, post_form
from feeds.models import Feed, Subscription
from feeds.parsing import ParsedFeed, http_url

log = logging.getLogger(__name__)

# Renew when this share of the lease has passed, and at least RENEW_MARGIN before it ends.
RENEW_AT = 0.8
RENEW_MARGIN = timedelta(seconds=10)
# A hub that accepted a request but never came to verify it is asked again after this.
VERIFY_WITHIN = timedelta(minutes=5)
# Failed requests back off from RETRY_AFTER, doubling, up to MAX_BACKOFF.
RETRY_AFTER = timedelta(minutes=1)
MAX_BACKOFF = timedelta(hours=6)
# A subscription claimed for a request is not claimed again for this long (the task's time limit).
CLAIM_FOR = timedelta(seconds=60)
MAX_CHALLENGE = 1024
SUBSCRIBE, UNSUBSCRIBE, DENIED = "subscribe", "unsubscribe", "denied"
LIVE = (Subscription.State.REQUESTED, Subscription.State.ACTIVE)


def why_not_pushed() -> str:
    """Why this Livelog cannot take pushes ("" when it can): a hub must be able to reach SITE_URL."""
    if not settings.FEEDS_WEBSUB:
        return "WebSub is turned off (FEEDS_WEBSUB=false)"
    parts = urlsplit(settings.SITE_URL)
    private_ok = settings.FEEDS_ALLOW_PRIVATE_NETWORKS
    if parts.scheme != "https" and not (private_ok and parts.scheme == "http"):
        return f"SITE_URL ({settings.SITE_URL}) is not an https URL, so no hub could reach it"
    host = (parts.hostname or "").lower()
    allowed = [name.lower() for name in settings.ALLOWED_HOSTS]
    if "*" not in allowed and not any(host == a or (a.startswith(".") and host.endswith(a)) for a in allowed):
        return f"SITE_URL ({settings.SITE_URL}) is not this site: its host is not in ALLOWED_HOSTS"
    try:
        check_url(settings.SITE_URL)
    except FetchError as exc:
        return f"SITE_URL cannot be reached by a hub: {exc}"
    return ""


def callback_url(token: str) -> str:
    return settings.SITE_URL.rstrip("/") + reverse("websub-callback", args=[token])


# Planning: which feeds need a subscription, which subscriptions must go, which requests are due


def maintain(now: datetime | None = None) -> list[int]:
    """Bring subscriptions in line with the feeds; the ids of those due for a request to their hub.

    Safe to run from two beats at once: due rows are claimed with SKIP LOCKED.
    """
    now = now or timezone.now()
    State = Subscription.State
    # A lease that ran out without renewal: the hub has stopped, and so do we.
    Subscription.objects.filter(state=State.ACTIVE, lease_expires_at__lte=now).update(
        state=State.EXPIRED, pending="", next_action_at=None
    )
    _drop_unwanted(now)
    if not why_not_pushed():
        _subscribe_new(now)
    with transaction.atomic():
        due = list(
            Subscription.objects.select_for_update(skip_locked=True)
            .filter(state__in=LIVE, next_action_at__lte=now)
            .values_list("id", flat=True)[:1000]
        )
        Subscription.objects.filter(id__in=due).update(next_action_at=now + CLAIM_FOR)
    return due


def _drop_unwanted(now: datetime) -> None:
    """Unsubscribe where the feed is gone, disabled, or no longer names this hub and topic."""
    State = Subscription.State
    rows = Subscription.objects.filter(state__in=LIVE).exclude(pending=UNSUBSCRIBE)
    rows = rows.values_list(
        "id", "state", "hub", "topic", "feed_id", "feed__enabled", "feed__hubs", "feed__topic"
    )
    for pk, state, hub, topic, feed_id, enabled, hubs, feed_topic in rows:
        if feed_id is not None and enabled and hub in (hubs or []) and topic == feed_topic:
            continue
        if feed_id is not None:
            Feed.objects.filter(pk=feed_id).update(pushed_until=None)
        if state == State.REQUESTED:
            # Never verified: refusing the verification, should it still come, is unsubscribing.
            Subscription.objects.filter(pk=pk).update(
                state=State.UNSUBSCRIBED, pending="", next_action_at=None
            )
        else:
            Subscription.objects.filter(pk=pk).update(pending=UNSUBSCRIBE, error_count=0, next_action_at=now)


def _subscribe_new(now: datetime) -> None:
    """A subscription for every enabled feed that advertises a hub and has none under way."""
    wanting = (
        Feed.objects.filter(enabled=True)
        .exclude(hubs=[])
        .exclude(topic="")
        .exclude(subscriptions__state__in=LIVE)
        .values_list("id", "hubs", "topic")
    )
    for feed_id, hubs, topic in wanting:
        hub = next((h for h in hubs if isinstance(h, str)), "")
        if not hub:
            continue
        Subscription.objects.create(
            feed_id=feed_id,
            hub=hub,
            topic=topic,
            token=secrets.token_urlsafe(32),
            secret=secrets.token_urlsafe(48),
            pending=SUBSCRIBE,
            next_action_at=now,
        )


# Requests to hubs


def send_request(subscription_id: int) -> str:
    """Send the request a subscription is due for (subscribe, renew, unsubscribe); what happened, in words."""
    sub = Subscription.objects.filter(pk=subscription_id, state__in=LIVE).first()
    if sub is None:
        return "gone"
    mode = UNSUBSCRIBE if sub.pending == UNSUBSCRIBE else SUBSCRIBE
    fields = {
        "hub.mode": mode,
        "hub.topic": sub.topic,
        "hub.callback": callback_url(sub.token),
    }
    if mode == SUBSCRIBE:
        fields.update({"hub.lease_seconds": str(settings.FEEDS_WEBSUB_LEASE), "hub.secret": sub.secret})
    now = timezone.now()
    # Pending before the request leaves: a quick hub verifies before its answer reaches us.
    Subscription.objects.filter(pk=sub.pk).update(pending=mode, requested_at=now)
    try:
        status, text = post_form(sub.hub, fields)
        if status not in (202, 204):
            raise FetchError(f"the hub answered HTTP {status}: {' '.join(text.split())[:200]}")
    except FetchError as exc:
        _failed(sub, f"{mode} request failed: {exc}", now)
        return f"error: {exc}"
    # The hub verifies asynchronously; if it never does, ask again. (If it already did, that stands.)
    Subscription.objects.filter(pk=sub.pk, pending=mode).update(next_action_at=now + VERIFY_WITHIN)
    return f"{mode} requested"


def _failed(sub: Subscription, message: str, now: datetime) -> None:
    errors = sub.error_count + 1
    wait = min(RETRY_AFTER * 2 ** (errors - 1), MAX_BACKOFF) * random.uniform(0.8, 1.2)
    log.warning("websub: subscription %s: %s (retry in %d s)", sub.pk, message, wait.total_seconds())
    Subscription.objects.filter(pk=sub.pk).update(
        error_count=errors, last_error=message[:2000], last_error_at=now, next_action_at=now + wait
    )


# The callback: verification of intent (GET)


def verify(token: str, params) -> tuple[int, str]:
    """Answer a hub's GET: (200, the challenge) only for the request we have pending; else 404."""
    mode, topic = params.get("hub.mode", ""), params.get("hub.topic", "")
    challenge = params.get("hub.challenge", "")
    now = timezone.now()
    with transaction.atomic():
        sub = Subscription.objects.select_for_update().filter(token=token).first()
        if sub is None or not sub.pending or topic != sub.topic:
            return _refused("verify:outcome:refused", "no such request")
        if mode == DENIED and sub.pending == SUBSCRIBE:
            reason = " ".join(params.get("hub.reason", "").split())[:200] or "no reason given"
            _failed(sub, f"the hub denied the subscription: {reason}", now)
            Subscription.objects.filter(pk=sub.pk).update(pending="")
            stats.observe(Counter({"verify:outcome:denied": 1}))
            return 200, ""
        if mode != sub.pending or not challenge or len(challenge) > MAX_CHALLENGE:
            return _refused("verify:outcome:refused", "mode or challenge does not match")
        if mode == UNSUBSCRIBE:
            Subscription.objects.filter(pk=sub.pk).update(
                state=Subscription.State.UNSUBSCRIBED, pending="", next_action_at=None, error_count=0
            )
            if sub.feed_id:
                Feed.objects.filter(pk=sub.feed_id).update(pushed_until=None)
        else:
            lease = _lease(params.get("hub.lease_seconds", ""))
            expires = now + timedelta(seconds=lease)
            renew = now + min(timedelta(seconds=lease * RENEW_AT), timedelta(seconds=lease) - RENEW_MARGIN)
            Subscription.objects.filter(pk=sub.pk).update(
                state=Subscription.State.ACTIVE,
                pending="",
                lease_seconds=lease,
                verified_at=now,
                lease_expires_at=expires,
                next_action_at=max(renew, now),
                error_count=0,
            )
            if sub.feed_id and sub.demoted_at is None:
                Feed.objects.filter(pk=sub.feed_id).update(pushed_until=expires)
    stats.observe(Counter({"verify:outcome:confirmed": 1}))
    return 200, challenge


def _lease(value: str) -> int:
    # Required of hubs on subscribe; one that leaves it out gets what we asked for.
    try:
        lease = int(value)
    except ValueError:
        lease = settings.FEEDS_WEBSUB_LEASE
    return max(lease, 1)


def _refused(field: str, why: str) -> tuple[int, str]:
    stats.observe(Counter({field: 1}))
    return 404, why


# Discovery, from every fetch


REL = re.compile(r"""\brel\s{0,20}=\s{0,20}(?:"([^"]{0,200})"|([^\s;,"]{1,200}))""", re.IGNORECASE)


def links(headers, base: str) -> tuple[list[str], str]:
    """The hubs and the self URL named by HTTP Link headers (RFC 8288): `<url>; rel="hub", ...`."""
    hubs, self_url = [], ""
    for value in headers.get_list("link"):
        value = value[:8192]
        pos = value.find("<")
        while pos >= 0:  # one pass: each link's target, then its parameters up to the next "<"
            end = value.find(">", pos)
            if end < 0:
                break
            following = value.find("<", end)
            rel = REL.search(value, end, following if following >= 0 else len(value))
            rels = (rel[1] or rel[2]).lower().split() if rel else []
            url = http_url(value[pos + 1 : end], base)
            if url and len(url) <= 2048:
                if "hub" in rels and url not in hubs:
                    hubs.append(url)
                if "self" in rels and not self_url:
                    self_url = url
            pos = following
    return hubs[:5], self_url


def discovered(feed: Feed, parsed: ParsedFeed, headers) -> dict:
    """The changes to record on `feed` if the hubs or topic it advertises changed.

    Link headers win over the document, as the specification orders; a feed that names a hub but no
    self URL is its own topic.
    """
    header_hubs, header_self = links(headers, feed.url)
    hubs = header_hubs or parsed.hubs
    topic = (header_self or parsed.self_url or feed.url) if hubs else ""
    if hubs == feed.hubs and topic == feed.topic:
        return {}
    if feed.hubs or hubs:
        log.info("websub: feed %s names hubs %s, topic %s", feed.pk, hubs, topic)
    return {"hubs": hubs, "topic": topic}


def push_state(feed: Feed, sub: Subscription | None, reason: str, now: datetime | None = None) -> str:
    """The feed's push state in words, for the health page and the API."""
    now = now or timezone.now()
    if not feed.hubs:
        return "not pushed: the feed names no hub"
    if sub is None:
        return f"not pushed: {reason}" if reason else "not pushed yet: subscribing"
    if sub.state == Subscription.State.ACTIVE:
        if sub.pending == UNSUBSCRIBE:
            return "unsubscribing"
        if sub.demoted_at is not None:
            return "pushed, but demoted to normal polling after a miss"
        return "pushed"
    if sub.error_count:
        return (
            f"not pushed: the hub failed {sub.error_count} time(s); retrying at {sub.next_action_at:%H:%M:%S}"
        )
    return "not pushed yet: waiting for the hub to verify"


def current(feed_ids) -> dict[int, Subscription]:
    """The live subscription of each of these feeds, if any (one query)."""
    subs = Subscription.objects.filter(Q(feed_id__in=list(feed_ids)) & Q(state__in=LIVE)).order_by("id")
    return {sub.feed_id: sub for sub in subs}


def counts_by_state() -> dict[str, int]:
    """Subscriptions by state, active ones demoted after a miss counted apart (for /metrics)."""
    counts = dict.fromkeys([*Subscription.State.values, "demoted"], 0)
    demoted = Count("id", filter=Q(state=Subscription.State.ACTIVE, demoted_at__isnull=False))
    rows = Subscription.objects.values_list("state").annotate(n=Count("id"), demoted=demoted).order_by()
    for state, n, demoted_n in rows:
        counts[state] += n - demoted_n
        counts["demoted"] += demoted_n
    return counts
