"""A WebSub hub for tests, written from the W3C Recommendation (https://www.w3.org/TR/websub/).

Run as its own process (`python -m tests.websubhub --port N`); `TestHub` starts, drives and stops it.

What it does, as the specification asks of a hub:
- takes subscription requests (POST hub.mode=subscribe|unsubscribe, hub.topic, hub.callback,
  hub.lease_seconds, hub.secret), answers 202 at once, and then verifies the subscriber's intent with a
  GET to the callback carrying hub.mode, hub.topic, hub.challenge and hub.lease_seconds; only a 2xx
  echoing the challenge makes (or ends) a subscription;
- grants a lease no longer than its maximum, and stops delivering when the lease runs out;
- on a publish ping (POST hub.mode=publish, hub.url=<topic>) fetches the topic and POSTs the content to
  every subscriber of it, with Link headers (rel="hub", rel="self") and X-Hub-Signature:
  <algorithm>=HMAC(secret, body);
- can deny a subscription (GET with hub.mode=denied).

What it does for tests (JSON under /_control/): change its settings (algorithm, maximum lease,
whether it pushes at all, whether it denies), deliver arbitrary content (forged signature, any
algorithm, to any callback, including one that is no longer subscribed), send a verification the
subscriber never asked for, and report its subscriptions, verifications and deliveries.
"""

import argparse
import hashlib
import hmac
import json
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ALGORITHMS = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "sha384": hashlib.sha384,
    "sha512": hashlib.sha512,
}


class Hub:
    def __init__(self, url: str):
        self.url = url
        self.lock = threading.Lock()
        self.config = {"algorithm": "sha256", "max_lease": 864000, "pushing": True, "deny": False}
        # callback -> {"topic", "secret", "lease_seconds", "expires"}
        self.subscriptions: dict[str, dict] = {}
        self.verifications: list[dict] = []
        self.deliveries: list[dict] = []
        self.requests: list[dict] = []

    # Subscriber requests

    def request(self, form: dict) -> tuple[int, str]:
        mode = form.get("hub.mode", "")
        with self.lock:
            self.requests.append({**form, "at": time.time()})
        if mode == "publish":
            topic = form.get("hub.url") or form.get("hub.topic", "")
            threading.Thread(target=self.publish, args=(topic,), daemon=True).start()
            return 204, ""
        callback, topic = form.get("hub.callback", ""), form.get("hub.topic", "")
        if mode not in ("subscribe", "unsubscribe") or not callback.startswith(("http://", "https://")):
            return 400, "hub.mode and an http(s) hub.callback are required"
        if not topic:
            return 400, "hub.topic is required"
        secret = form.get("hub.secret", "")
        if len(secret.encode()) >= 200:
            return 400, "hub.secret must be less than 200 bytes"
        try:
            asked = int(form.get("hub.lease_seconds") or self.config["max_lease"])
        except ValueError:
            return 400, "hub.lease_seconds must be a number"
        lease = max(1, min(asked, self.config["max_lease"]))
        threading.Thread(target=self.verify, args=(mode, callback, topic, secret, lease), daemon=True).start()
        return 202, ""

    def verify(self, mode: str, callback: str, topic: str, secret: str, lease: int) -> None:
        if mode == "subscribe" and self.config["deny"]:
            self.get(callback, {"hub.mode": "denied", "hub.topic": topic, "hub.reason": "denied by the test"})
            return
        challenge = secrets.token_urlsafe(16)
        params = {"hub.mode": mode, "hub.topic": topic, "hub.challenge": challenge}
        if mode == "subscribe":
            params["hub.lease_seconds"] = str(lease)
        status, body = self.get(callback, params)
        confirmed = 200 <= status < 300 and body == challenge
        with self.lock:
            self.verifications.append(
                {
                    "mode": mode,
                    "callback": callback,
                    "topic": topic,
                    "status": status,
                    "confirmed": confirmed,
                    "lease_seconds": lease,
                    "at": time.time(),
                }  # fmt: skip
            )
            if not confirmed:
                return
            if mode == "subscribe":
                self.subscriptions[callback] = {
                    "topic": topic, "secret": secret, "lease_seconds": lease, "expires": time.time() + lease,
                }  # fmt: skip
            else:
                self.subscriptions.pop(callback, None)

    def get(self, url: str, params: dict) -> tuple[int, str]:
        separator = "&" if "?" in url else "?"
        try:
            with urllib.request.urlopen(url + separator + urllib.parse.urlencode(params), timeout=10) as r:  # noqa: S310
                return r.status, r.read(4096).decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(4096).decode("utf-8", "replace")
        except OSError as exc:
            return 0, str(exc)

    # Content distribution

    def active(self, topic: str) -> list[tuple[str, dict]]:
        now = time.time()
        with self.lock:
            return [
                (cb, sub)
                for cb, sub in self.subscriptions.items()
                if sub["topic"] == topic and sub["expires"] > now
            ]

    def publish(self, topic: str) -> None:
        if not self.config["pushing"]:
            return
        try:
            with urllib.request.urlopen(topic, timeout=10) as response:  # noqa: S310
                body, content_type = response.read(), response.headers.get("Content-Type", "application/xml")
        except OSError:
            return
        for callback, sub in self.active(topic):
            self.deliver(callback, topic, body, content_type, sub["secret"])

    def deliver(
        self, callback, topic, body: bytes, content_type, secret, algorithm=None, signature=None
    ) -> int:
        algorithm = algorithm or self.config["algorithm"]
        if signature is None and secret:
            digest = ALGORITHMS.get(algorithm, hashlib.md5)
            signature = f"{algorithm}={hmac.new(secret.encode(), body, digest).hexdigest()}"
        headers = {
            "Content-Type": content_type,
            "Link": f'<{self.url}>; rel="hub", <{topic}>; rel="self"',
        }
        if signature:
            headers["X-Hub-Signature"] = signature
        request = urllib.request.Request(callback, data=body, headers=headers, method="POST")
        sent = time.time()
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except OSError:
            status = 0
        if status == 410:
            # "the subscriber has deleted the subscription": stop delivering to it.
            with self.lock:
                self.subscriptions.pop(callback, None)
        with self.lock:
            self.deliveries.append(
                {
                    "callback": callback,
                    "topic": topic,
                    "status": status,
                    "sent": sent,
                    "done": time.time(),
                    "size": len(body),
                }  # fmt: skip
            )
        return status

    # Control, for tests

    def control(self, action: str, data: dict) -> dict:
        if action == "config":
            self.config.update(data)
            return self.config
        if action == "state":
            with self.lock:
                return {
                    "config": self.config,
                    "subscriptions": self.subscriptions,
                    "verifications": self.verifications,
                    "deliveries": self.deliveries,
                    "requests": self.requests,
                    "now": time.time(),
                }
        if action == "deliver":
            topic = data["topic"]
            body = data["body"].encode() if "body" in data else b"x" * int(data["size"])
            content_type = data.get("content_type", "application/rss+xml")
            if "callback" in data:
                targets = [(data["callback"], {"secret": data.get("secret", "")})]
            else:
                targets = self.active(topic)
            statuses = [
                self.deliver(
                    cb,
                    topic,
                    body,
                    content_type,
                    data.get("secret", sub["secret"]),
                    data.get("algorithm"),
                    data.get("signature"),
                )  # fmt: skip
                for cb, sub in targets
            ]
            return {"statuses": statuses}
        if action == "challenge":
            params = {"hub.mode": data.get("mode", "subscribe"), "hub.topic": data["topic"],
                      "hub.challenge": secrets.token_urlsafe(16), "hub.lease_seconds": "3600"}  # fmt: skip
            status, body = self.get(data["callback"], params)
            return {"status": status, "body": body, "challenge": params["hub.challenge"]}
        raise KeyError(action)


def serve(port: int) -> None:
    hub = Hub(f"http://127.0.0.1:{port}/")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            data = self.rfile.read(length)
            if self.path.startswith("/_control/"):
                try:
                    answer = hub.control(self.path.removeprefix("/_control/"), json.loads(data or b"{}"))
                except (KeyError, ValueError) as exc:
                    return self.answer(400, f"bad control request: {exc}")
                return self.answer(200, json.dumps(answer), "application/json")
            form = dict(urllib.parse.parse_qsl(data.decode("utf-8", "replace")))
            status, text = hub.request(form)
            self.answer(status, text)

        def do_GET(self):
            if self.path == "/_control/state":
                return self.answer(200, json.dumps(hub.control("state", {})), "application/json")
            self.answer(405, "a hub takes POST")

        def answer(self, status: int, text: str, content_type: str = "text/plain"):
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"websub hub listening on {hub.url}", flush=True)
    server.serve_forever()


class TestHub:
    """Starts the hub in its own process and drives it (tests and bench)."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self):
        from tests.procs import Proc, free_port, wait_until

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.proc = Proc("websubhub", f"python -m tests.websubhub --port {self.port}", {})
        wait_until(lambda: "listening" in self.proc.output(), 15, what="the test hub")

    def control(self, action: str, **data) -> dict:
        request = urllib.request.Request(
            f"{self.url}_control/{action}", data=json.dumps(data).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return json.loads(response.read())

    def state(self) -> dict:
        with urllib.request.urlopen(f"{self.url}_control/state", timeout=10) as response:  # noqa: S310
            return json.loads(response.read())

    def publish(self, topic: str) -> None:
        """The publisher's ping: the hub fetches the topic and pushes it to its subscribers."""
        data = urllib.parse.urlencode({"hub.mode": "publish", "hub.url": topic}).encode()
        with urllib.request.urlopen(urllib.request.Request(self.url, data=data), timeout=10):  # noqa: S310
            pass

    def stop(self) -> None:
        self.proc.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A WebSub hub for tests.")
    parser.add_argument("--port", type=int, required=True)
    serve(parser.parse_args().port)
