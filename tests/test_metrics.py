"""/metrics: protected by a token, fed by the real fetch path."""

import re
from datetime import UTC, datetime, timedelta

import pytest

from feeds.ingest import fetch_and_store
from feeds.models import Feed

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("static_files")]


def value(text: str, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def scrape(client) -> str:
    response = client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
    assert response.status_code == 200
    return response.content.decode()


def test_metrics_are_hidden_without_a_token_setting(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404


def test_a_wrong_token_is_refused(client, settings):
    settings.METRICS_TOKEN = "s3cret"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_fetches_entries_and_stage_latencies_are_counted(client, settings, feed_server, allow_private):
    settings.METRICS_TOKEN = "s3cret"
    half_an_hour_ago = (datetime.now(UTC) - timedelta(minutes=30)).strftime("%a, %d %b %Y %H:%M:%S +0000")
    body = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
        f"<item><guid>1</guid><title>One</title><pubDate>{half_an_hour_ago}</pubDate></item>"
        f"<item><guid>2</guid><title>Two</title><pubDate>{half_an_hour_ago}</pubDate></item>"
        "</channel></rss>"
    )
    good = Feed.objects.create(url=feed_server.route("/m.xml", body, headers={"ETag": '"v1"'}))
    bad = Feed.objects.create(url=feed_server.route("/broken.xml", status=500))
    before = scrape(client)

    fetch_and_store(good.pk)
    feed_server.route("/m.xml", status=304)
    fetch_and_store(good.pk)
    fetch_and_store(bad.pk)
    after = scrape(client)

    def delta(series):
        return value(after, series) - value(before, series)

    assert delta('livelog_fetches_total{outcome="stored"}') == 1
    assert delta('livelog_fetches_total{outcome="not_modified"}') == 1
    assert delta('livelog_fetches_total{outcome="error"}') == 1
    assert delta('livelog_entries_stored_total{kind="new"}') == 2
    assert delta("livelog_fetch_duration_seconds_count") == 3
    assert delta('livelog_entry_stage_seconds_count{stage="published_to_fetched"}') == 2
    assert delta('livelog_entry_stage_seconds_count{stage="fetched_to_committed"}') == 2
    # Published half an hour before it was fetched: in the hour bucket, not below 15 minutes.
    assert delta('livelog_entry_stage_seconds_bucket{le="900.0",stage="published_to_fetched"}') == 0
    assert delta('livelog_entry_stage_seconds_bucket{le="3600.0",stage="published_to_fetched"}') == 2
    assert "livelog_connected_clients" in after
    assert "livelog_entry_delivered_seconds_bucket" in after


def test_the_delivery_path_in_use_is_reported(client, settings):
    settings.METRICS_TOKEN = "s3cret"
    text = scrape(client)
    assert value(text, 'livelog_delivery_path{path="shared_frames"}') == 1
    assert value(text, 'livelog_delivery_path{path="asgi"}') == 0
    settings.LIVE_SHARED_FRAMES = False  # forced off: the standard ASGI path
    text = scrape(client)
    assert value(text, 'livelog_delivery_path{path="shared_frames"}') == 0
    assert value(text, 'livelog_delivery_path{path="asgi"}') == 1
