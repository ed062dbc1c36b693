"""WebSub content distribution: what hubs push to a callback, and what polling finds they missed.

A POST to a callback is taken only with a valid X-Hub-Signature (sha1, sha256, sha384 or sha512 HMAC
of the exact body with the subscription's secret, compared in constant time), and is parsed and
stored by the same code as a fetch. Subscribing and discovery are in feeds/websub.py.
"""

import hashlib
import hmac
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from django.db.models import F
from django.utils import timezone

from feeds import changelog, stats
from feeds.models import Feed, Subscription
from feeds.parsing import ParseError, parse
from feeds.store import store

log = logging.getLogger(__name__)

ALGORITHMS = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "sha384": hashlib.sha384,
    "sha512": hashlib.sha512,
}

# The callback: content distribution (POST)


@dataclass
class Push:
    """What became of one POST to a callback."""

    status: int
    outcome: str
    new: int = 0
    updated: int = 0


def check_signature(secret: str, body: bytes, header: str) -> str:
    """ "" if `header` (X-Hub-Signature: method=hex) signs `body` with `secret`, else the outcome name."""
    method, _, given = header.strip().partition("=")
    digest = ALGORITHMS.get(method.strip().lower())
    if not header.strip():
        return "unsigned"
    if digest is None:
        return "bad_algorithm"
    expected = hmac.new(secret.encode(), body, digest).hexdigest()
    # Constant time: how much of a forged signature was right must not show in the time it takes.
    if not hmac.compare_digest(expected.encode(), given.strip().lower().encode()):
        return "bad_signature"
    return ""


def receive(token: str, body: bytes, signature: str, content_type: str, received_at: datetime) -> Push:
    """Take one push: check the callback and the signature, then parse and store like a fetch."""
    now = timezone.now()
    sub = Subscription.objects.filter(token=token).select_related("feed").first()
    feed = sub.feed if sub else None
    if (
        sub is None
        or sub.state != Subscription.State.ACTIVE
        or (sub.lease_expires_at and sub.lease_expires_at <= now)
        or feed is None
        or not feed.enabled
    ):
        return _counted(Push(410, "gone"))
    problem = check_signature(sub.secret, body, signature)
    if problem:
        # Ignored, and answered 2xx as the specification advises: a forger learns nothing.
        _push_error(
            sub, f"push refused: {problem.replace('_', ' ')} ({signature.split('=')[0][:20] or 'none'})"
        )
        return _counted(Push(202, problem))
    try:
        parsed = parse(body, url=sub.topic, content_type=content_type)
    except ParseError as exc:
        _push_error(sub, f"pushed content refused: {exc}")
        return _counted(Push(202, "invalid"))
    with changelog.arriving("push", received_at):
        new, updated = store(feed, parsed, fetched_at=received_at)
    changes = {"push_count": F("push_count") + 1, "last_push_at": now}
    if new and sub.demoted_at is not None:
        # The hub brought something before any poll did: it is trusted again.
        changes["demoted_at"] = None
        Feed.objects.filter(pk=feed.pk).update(pushed_until=sub.lease_expires_at)
    Subscription.objects.filter(pk=sub.pk).update(**changes)
    stats.record_push_stored(received_at, timezone.now(), new)
    return _counted(Push(204, "stored", new, updated))


def _push_error(sub: Subscription, message: str) -> None:
    log.warning("websub: subscription %s: %s", sub.pk, message)
    Subscription.objects.filter(pk=sub.pk).update(
        refused_count=F("refused_count") + 1, last_error=message[:2000], last_error_at=timezone.now()
    )


def _counted(push: Push) -> Push:
    stats.observe(Counter({f"push:outcome:{push.outcome}": 1}))
    return push


# Polling as the safety net


def missed(feed: Feed, new: int, now: datetime) -> None:
    """A poll of a pushed feed stored `new` entries the hub had not pushed: count them against the hub.

    The feed goes back to its normal interval until a push is first again. Written now, not with the
    fetch's outcome at the end of its batch: a push that promotes the hub meanwhile must not be undone.
    """
    if not new or feed.pushed_until is None or feed.pushed_until <= now:
        return
    Feed.objects.filter(pk=feed.pk).update(pushed_until=None)
    sub = Subscription.objects.filter(feed=feed, state=Subscription.State.ACTIVE).first()
    if sub is None:
        return
    Subscription.objects.filter(pk=sub.pk).update(missed_count=F("missed_count") + new, demoted_at=now)
    stats.observe(Counter({f"push:missed:{sub.hub}": new}))
    log.info("websub: a poll of feed %s found %d entries %s did not push", feed.pk, new, sub.hub)
