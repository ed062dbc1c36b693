"""Production shape: two web processes, two workers and one beat on PostgreSQL and Redis."""

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from feeds.models import Entry, Feed
from tests.conftest import METRICS_TOKEN
from tests.feedserver import GrowingFeed
from tests.procs import ROOT, wait_until
from tests.wsclient import ResumingClient

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def readyz(url: str) -> tuple[int, dict]:
    """The full report: it takes the metrics token (the stack sets one)."""
    request = urllib.request.Request(url + "/readyz", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_two_webs_two_workers_one_beat_deliver_exactly_once_and_report_readiness(
    stack, feed_server, own_redis
):
    stack.env["REDIS_URL"] = own_redis.url
    web_a, _ = stack.web()
    web_b, _ = stack.web()
    stack.worker()
    stack.worker()
    stack.beat()
    feeds = [GrowingFeed(feed_server, f"/s{n}.xml", f"s{n}") for n in range(4)]
    for feed in feeds:
        Feed.objects.create(url=feed.url, interval=5)
    clients = [ResumingClient(url, "0") for url in (web_a, web_a, web_b, web_b)]
    try:
        for _ in range(12):
            for feed in feeds:
                feed.append()
            time.sleep(1)
        wait_until(lambda: Entry.objects.count() == 48, 30, what=f"48 stored\n{stack.logs()}")
        stored = set(Entry.objects.values_list("id", flat=True))
        for client in clients:
            wait_until(lambda c=client: set(c.created_ids()) >= stored, 20, what="every client to have all")
        time.sleep(1)
        for client in clients:
            ids = client.created_ids()
            assert len(ids) == len(stored) == len(set(ids))
            assert client.reconnects == 0
    finally:
        for client in clients:
            client.stop()

    for web in (web_a, web_b):
        wait_until(lambda w=web: readyz(w)[0] == 200, 30, what=f"ready\n{readyz(web)}")
    own_redis.kill()
    for web in (web_a, web_b):
        # A report is reused for a few seconds: the next one sees Redis gone.
        status, body = wait_until(lambda w=web: (r := readyz(w))[0] == 503 and r, 15, what="unready")
        assert not body["checks"]["redis"]["ok"]
    own_redis.start()
    for web in (web_a, web_b):
        wait_until(lambda w=web: readyz(w)[0] == 200, 40, what=f"ready again\n{readyz(web)}\n{stack.logs()}")


def test_readyz_turns_unhealthy_without_redis_and_healthy_when_it_returns(stack, own_redis):
    stack.env["REDIS_URL"] = own_redis.url
    web = stack.pipeline()
    wait_until(lambda: readyz(web)[0] == 200, 30, what=f"ready\n{readyz(web)}\n{stack.logs()}")
    status, body = readyz(web)
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "redis", "channel_layer", "beat", "worker"}

    own_redis.kill()
    status, body = wait_until(lambda: (r := readyz(web))[0] == 503 and r, 15, what="unready")
    assert not body["checks"]["redis"]["ok"]
    assert not body["checks"]["channel_layer"]["ok"]

    own_redis.start()
    wait_until(lambda: readyz(web)[0] == 200, 40, what=f"ready again\n{readyz(web)}\n{stack.logs()}")


def test_healthz_answers_while_the_process_is_up(stack):
    web, _ = stack.web()
    with urllib.request.urlopen(web + "/healthz", timeout=5) as response:  # noqa: S310
        assert json.load(response) == {"status": "ok"}


def test_check_deploy_is_clean_with_production_settings():
    env = {
        "PATH": "/usr/bin:/bin",
        "DEBUG": "false",
        "SECRET_KEY": "a-long-random-production-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",
        "ALLOWED_HOSTS": "live.example.com",
        "CSRF_TRUSTED_ORIGINS": "https://live.example.com",
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/livelog",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_the_app_refuses_to_start_without_a_secret_key_in_production():
    env = {"PATH": "/usr/bin:/bin", "DEBUG": "false", "SECRET_KEY": ""}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "SECRET_KEY is required" in result.stderr
