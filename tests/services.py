"""make test's services: python tests/services.py COMMAND...

Runs COMMAND (pytest) against the PostgreSQL of DATABASE_URL and the Redis of
LIVELOG_TEST_REDIS_URL when they answer. When one does not, starts a throwaway one from the
installed binaries (a temporary data folder, a private port), points COMMAND at it and stops it
afterwards, so a newcomer's test run never depends on shared services. When what the tests need is
not installed, says in one line what to install. Standard library only.
"""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from urllib.parse import urlsplit, urlunsplit

CHROMIUM = "/usr/bin/chromium"  # tests/conftest.py drives this one


def answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find(name: str) -> str | None:
    """A binary on PATH, or in Debian's versioned PostgreSQL folder (not on PATH by default)."""
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), *folders]))


def wait_for(check, seconds: float, what: str, log: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise SystemExit(f"make test: the throwaway {what} did not start; its log: {log}")


class Services:
    def __init__(self):
        self.folder = tempfile.mkdtemp(prefix="livelog-test-services-")
        self.procs: list[subprocess.Popen] = []

    def as_owner(self) -> list[str]:
        """PostgreSQL refuses to run as root: as root, run it as the postgres (or nobody) user."""
        if os.geteuid() != 0:
            return []
        for user in ("postgres", "nobody"):
            try:
                entry = pwd.getpwnam(user)
            except KeyError:
                continue
            for root, folders, files in os.walk(self.folder):
                for name in [root, *(os.path.join(root, f) for f in folders + files)]:
                    os.chown(name, entry.pw_uid, entry.pw_gid)
            return [shutil.which("runuser") or "runuser", "-u", user, "--"]
        raise SystemExit(
            "make test: PostgreSQL cannot run as root and there is no postgres user: useradd postgres"
        )

    def postgres(self, url: str) -> str:
        initdb, postgres = find("initdb"), find("postgres")
        data, log = os.path.join(self.folder, "pg"), os.path.join(self.folder, "postgres.log")
        os.mkdir(data)
        owner = self.as_owner()
        subprocess.run(
            [*owner, initdb, "-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        port = free_port()
        with open(log, "w") as out:
            self.procs.append(
                subprocess.Popen(
                    [
                        *owner,
                        postgres,
                        "-D",
                        data,
                        "-p",
                        str(port),
                        "-k",
                        data,
                        "-c",
                        "listen_addresses=127.0.0.1",
                        "-c",
                        "fsync=off",
                        "-c",
                        "synchronous_commit=off",
                        "-c",
                        "full_page_writes=off",
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
        ready = find("pg_isready")
        wait_for(
            lambda: subprocess.run([ready, "-q", "-h", "127.0.0.1", "-p", str(port)]).returncode == 0,
            30,
            "PostgreSQL",
            log,
        )
        parts = urlsplit(url)
        return urlunsplit(parts._replace(netloc=f"postgres@127.0.0.1:{port}"))

    def redis(self, url: str) -> str:
        port, log = free_port(), os.path.join(self.folder, "redis.log")
        self.procs.append(
            subprocess.Popen(
                [
                    find("redis-server"),
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    self.folder,
                    "--logfile",
                    log,
                ]
            )
        )
        wait_for(lambda: answers("127.0.0.1", port), 10, "Redis", log)
        parts = urlsplit(url)
        return urlunsplit(parts._replace(netloc=f"127.0.0.1:{port}"))

    def stop(self):
        for proc in self.procs:
            proc.terminate()  # postgres: a smart shutdown; redis-server: saves nothing (--save "")
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def missing(database_running: bool) -> str | None:
    """What to install, in one line, or None."""
    needed = ["redis-server"]  # tests start their own Redis servers (fault tests, TLS) too
    if not database_running:
        needed += ["initdb", "postgres", "pg_isready"]
    absent = [name for name in needed if find(name) is None]
    packages = []
    if "redis-server" in absent:
        packages.append("redis-server")
    if set(absent) - {"redis-server"}:
        packages.append("postgresql")
    if not os.path.exists(CHROMIUM):
        packages.append("chromium")
    if not packages:
        return None
    why = "" if database_running else " (PostgreSQL does not answer, so the tests start their own)"
    return f"make test needs {', '.join(packages)}{why}: sudo apt-get install -y {' '.join(packages)}"


def main(command: list[str]) -> int:
    database_url = os.environ["DATABASE_URL"]
    redis_url = os.environ["LIVELOG_TEST_REDIS_URL"]
    database, redis_ = urlsplit(database_url), urlsplit(redis_url)
    database_running = answers(database.hostname or "127.0.0.1", database.port or 5432)
    redis_running = answers(redis_.hostname or "127.0.0.1", redis_.port or 6379)
    lacking = missing(database_running)
    if lacking:
        print(lacking, file=sys.stderr)
        return 1
    services = Services()
    env = dict(os.environ)
    try:
        if not database_running:
            env["DATABASE_URL"] = services.postgres(database_url)
            print(
                f"make test: PostgreSQL does not answer at {database.netloc}; using a throwaway one",
                file=sys.stderr,
            )
        if not redis_running:
            env["LIVELOG_TEST_REDIS_URL"] = services.redis(redis_url)
            print(
                f"make test: Redis does not answer at {redis_.netloc}; using a throwaway one", file=sys.stderr
            )
        return subprocess.run(command, env=env).returncode
    except KeyboardInterrupt:
        return 130
    finally:
        services.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
