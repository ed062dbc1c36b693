"""Server-Sent Events at /api/stream/: the socket's stream, resumable with Last-Event-ID."""

import json

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from feeds.models import Entry, Feed
from feeds.store import store
from tests.factories import document, item

pytestmark = [pytest.mark.django_db(transaction=True)]


async def next_event(chunks):
    while True:
        chunk = await anext(chunks)
        text = chunk.decode() if isinstance(chunk, bytes) else chunk
        if text.startswith("id:"):
            lines = dict(line.split(": ", 1) for line in text.strip().splitlines())
            return lines["id"], json.loads(lines["data"])


async def test_it_resumes_after_last_event_id_then_streams_live():
    feed = await Feed.objects.acreate(url="https://example.com/feed.xml")
    await sync_to_async(store)(feed, document(item("a")))
    first = await Entry.objects.aget()
    await sync_to_async(store)(feed, document(item("b")))

    response = await AsyncClient().get("/api/stream/", headers={"Last-Event-ID": first.cursor})
    assert response["Content-Type"] == "text/event-stream"
    chunks = aiter(response.streaming_content)
    event_id, message = await next_event(chunks)
    assert message["entry"]["title"] == "Title b"
    assert message["type"] == "entry.created"
    assert event_id == message["cursor"]

    await sync_to_async(store)(feed, document(item("c")))
    _, live = await next_event(chunks)
    assert live["entry"]["title"] == "Title c"
    await chunks.aclose()


async def test_a_bad_last_event_id_is_a_clear_400():
    response = await AsyncClient().get("/api/stream/", headers={"Last-Event-ID": "nope"})
    assert response.status_code == 400
