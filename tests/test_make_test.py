"""make test on a new machine: throwaway PostgreSQL and Redis when none answer, or one line saying
what to install."""

import os
import subprocess
import sys

from tests.procs import ROOT, free_port

# What the command sees, run by tests/services.py: its database and Redis, and where they live.
PROBE = """
import os, psycopg, redis
url = os.environ["DATABASE_URL"]
with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres") as connection:
    folder = connection.execute("SHOW data_directory").fetchone()[0]
redis_url = os.environ["LIVELOG_TEST_REDIS_URL"]
print(url, redis_url, folder, redis.Redis.from_url(redis_url).ping())
"""


def answers(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_it_starts_throwaway_postgresql_and_redis_when_none_answer_and_stops_them_after():
    dead_database, dead_redis = free_port(), free_port()
    result = subprocess.run(
        [sys.executable, "tests/services.py", sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:{dead_database}/livelog",
            "LIVELOG_TEST_REDIS_URL": f"redis://127.0.0.1:{dead_redis}/14",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    database_url, redis_url, folder, pinged = result.stdout.split()
    assert pinged == "True"
    assert database_url.endswith("/livelog")  # the same database name, on a port of its own
    assert str(dead_database) not in database_url
    assert redis_url.endswith("/14")
    assert str(dead_redis) not in redis_url
    assert "PostgreSQL does not answer" in result.stderr
    assert "Redis does not answer" in result.stderr
    # Stopped and gone afterwards.
    assert not answers(int(database_url.rsplit(":", 1)[1].split("/")[0]))
    assert not answers(int(redis_url.rsplit(":", 1)[1].split("/")[0]))
    assert not os.path.exists(folder)


def test_it_says_in_one_line_what_to_install_when_binaries_are_missing(tmp_path):
    result = subprocess.run(
        [sys.executable, "tests/services.py", sys.executable, "-c", "print('ran')"],
        cwd=ROOT,
        env={
            **os.environ,
            "PATH": str(tmp_path),  # nothing installed
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:{free_port()}/livelog",
            "LIVELOG_TEST_REDIS_URL": f"redis://127.0.0.1:{free_port()}/14",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stdout == ""  # the command never ran
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "apt-get install -y redis-server" in result.stderr
