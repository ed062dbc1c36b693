"""Real processes for tests: started in their own session, stopped by pid, logs kept for failures."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def procfile() -> dict[str, str]:
    commands = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            commands[name.strip()] = command.strip()
    return commands


class Proc:
    def __init__(self, name: str, command: str, env: dict, cwd: Path = ROOT, bin_dir: Path = VENV_BIN):
        self.name = name
        self.log = tempfile.NamedTemporaryFile(prefix=f"livelog-{name}-", suffix=".log", delete=False)  # noqa: SIM115
        full_env = {**os.environ, **env, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONUNBUFFERED": "1"}
        full_env = {name: value for name, value in full_env.items() if value is not None}  # None unsets
        self.popen = subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            cwd=cwd,
            env=full_env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self, sig=signal.SIGKILL):
        if self.alive():
            os.killpg(self.pid, sig)

    def stop(self, timeout: float = 10):
        if self.alive():
            os.killpg(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait()


def run_procfile(name: str, env: dict, port: int | None = None, **where) -> Proc:
    command = procfile()[name]
    if port is not None:
        command = command.replace("$PORT", str(port))
    return Proc(name, command, env, **where)


def wait_until(check, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    # `what` may be a callable: the state at the timeout (processes' logs), not at the start.
    raise AssertionError(f"timed out after {timeout} s waiting for {what() if callable(what) else what}")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
            return response.status == 200
    except OSError:
        return False
