"""Deploying as Heroku does: the buildpack's files, Heroku Redis (TLS, a password, a self-signed
certificate) and the smallest plans' connection limits."""

import datetime
import json
import subprocess
import sys

import pytest

from tests.procs import ROOT, Proc, free_port, wait_until

PASSWORD = "test-redis-password"  # noqa: S105 - a throwaway server's


def self_signed_certificate(folder):
    """A certificate for 127.0.0.1 signed by itself, as Heroku Redis presents."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "livelog-test-redis")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "redis.crt", folder / "redis.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


@pytest.fixture
def tls_redis(tmp_path):
    """A redis-server that speaks only TLS, with a password and a self-signed certificate."""
    import redis

    cert_file, key_file = self_signed_certificate(tmp_path)
    port = free_port()
    proc = Proc(
        "redis-tls",
        f"redis-server --port 0 --tls-port {port} --bind 127.0.0.1 --tls-cert-file {cert_file} "
        f"--tls-key-file {key_file} --tls-auth-clients no --requirepass {PASSWORD} "
        f"--save '' --appendonly no --dir {tmp_path}",
        {},
    )
    client = redis.Redis(
        port=port, password=PASSWORD, ssl=True, ssl_cert_reqs="none", socket_timeout=2, decode_responses=True
    )

    def ping():
        try:
            return client.ping()
        except redis.RedisError:
            return False

    wait_until(ping, 10, what=f"TLS redis\n{proc.output()}")
    client.url = f"rediss://:{PASSWORD}@127.0.0.1:{port}"
    yield client
    client.close()
    proc.stop()


# Every Redis client of a process, as production makes them; prints what each one got.
CLIENTS = """
import asyncio, django, json, sys
django.setup()
from django.core.cache import cache
from channels.layers import get_channel_layer
from config import redis
from config.celery import app
from feeds import stats
from live.health import check_redis

def layer_round_trip():
    async def go():
        layer = get_channel_layer("live")
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "t.ping"})
        return (await layer.receive(channel))["type"]
    return asyncio.run(go())

def broker():
    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1)
        return connection.as_uri()

def metrics():
    stats.observe({"probe": 1})  # never raises: read back to see whether it arrived
    return stats.read()["probe"]

checks = {
    "cache": lambda: (cache.set("probe", 1), cache.get("probe"))[1],
    "metrics": metrics,
    "health": lambda: check_redis()[1],
    "channel_layer": layer_round_trip,
    "celery_broker": broker,
}
report = {}
for name, check in checks.items():
    try:
        report[name] = "ok " + str(check())
    except Exception as exc:
        report[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps(report))
"""


def redis_clients(url: str, **env) -> dict[str, str]:
    result = subprocess.run(
        [sys.executable, "-c", CLIENTS],
        cwd=ROOT,
        env={**production_env(), "REDIS_URL": url, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def production_env() -> dict[str, str]:
    import os

    return {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SECRET_KEY": "test-only-secret-key-not-for-production-0123456789abcdef",
        "DATABASE_URL": os.environ.get("DATABASE_URL", ""),
    }


def test_every_redis_client_checks_the_certificate_by_default(tls_redis):
    report = redis_clients(tls_redis.url)
    for name, outcome in report.items():
        assert "certificate verify failed" in outcome.lower(), (name, report)


def test_one_setting_turns_certificate_checks_off_for_every_redis_client(tls_redis):
    report = redis_clients(tls_redis.url, REDIS_TLS_VERIFY="false")
    assert all(outcome.startswith("ok") for outcome in report.values()), report
    assert report["channel_layer"] == "ok t.ping"
    assert report["celery_broker"].startswith("ok rediss://")


def test_a_wrong_password_is_refused_not_ignored(tls_redis):
    wrong = tls_redis.url.replace(PASSWORD, "not-the-password")
    report = redis_clients(wrong, REDIS_TLS_VERIFY="false")
    assert not any(outcome.startswith("ok") for outcome in report.values()), report


def test_the_buildpack_finds_one_package_file_with_the_production_pins_only():
    root_files = [
        name
        for name in ("requirements.txt", "Pipfile.lock", "poetry.lock", "uv.lock")
        if (ROOT / name).exists()
    ]
    assert root_files == ["requirements.txt"]
    lines = [
        line.strip()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    # In step with requirements/ by construction: the root file is the production list.
    assert lines == ["-r requirements/base.txt"]
    pins = [
        line.split("#")[0].strip()
        for line in (ROOT / "requirements/base.txt").read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    packages = {pin.split("==")[0].split("[")[0].lower() for pin in pins}
    assert all("==" in pin for pin in pins), pins
    assert not packages & {"pytest", "ruff", "playwright", "honcho", "daphne", "psutil", "cryptography"}
    assert "celery[redis]==5.7.0" in pins  # kombu's Redis transport needs what the extra brings
    # The tested Python, not whatever is newest when the buildpack runs.
    assert (ROOT / ".python-version").read_text().strip() == "{}.{}".format(*sys.version_info[:2])
