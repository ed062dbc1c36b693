"""The guarded HTTP client: guard, pinned addresses, redirects, bounds, statuses, decoding.

Requests go to the real test server on 127.0.0.1. Where a test needs a public-looking host, the `network`
fixture fakes the DNS answer and routes that public address to the test server; HTTP is never mocked.
"""

import gzip
import socket
import ssl
import threading
import time
import tracemalloc
import zlib
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from feeds import fetching
from feeds.fetching import BlockedAddress, FetchError, RetryLater, check_url, fetch
from tests.feedserver import FeedServer

PUBLIC_IP = "93.184.216.34"  # a global address: the guard lets it through
MB = 1024 * 1024


def quick_server() -> FeedServer:
    """A FeedServer that stops at once: serve_forever's default 0.5 s poll would add that to every test."""
    server = FeedServer()
    server.thread = threading.Thread(target=server.httpd.serve_forever, args=(0.01,), daemon=True)
    return server


@pytest.fixture
def feed_server():
    server = quick_server().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def pools():
    """No connection is kept alive from one test into the next."""
    fetching._pools.close()
    yield fetching._pools
    fetching._pools.close()


class FakeNetwork:
    """Test-made DNS answers, and public addresses routed to the local test server.

    Every other name and address goes to the real resolver and network. `lookups` counts the lookups of
    each faked name; `connects` lists every (address, port) a socket was opened to.
    """

    def __init__(self, monkeypatch):
        self.answers: dict[str, list] = {}
        self.lookups: Counter = Counter()
        self.routes: dict[str, str] = {}
        self.connects: list[tuple] = []
        real_getaddrinfo, real_create_connection = socket.getaddrinfo, socket.create_connection

        def getaddrinfo(host, port, *args, **kwargs):
            if host not in self.answers:
                return real_getaddrinfo(host, port, *args, **kwargs)
            self.lookups[host] += 1
            answers = self.answers[host]
            addresses = answers[min(self.lookups[host], len(answers)) - 1]
            if addresses is None:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return [
                (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port or 0))
                for a in addresses
            ]

        def create_connection(address, *args, **kwargs):
            self.connects.append(tuple(address))
            host, port = address
            return real_create_connection((self.routes.get(host, host), port), *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        monkeypatch.setattr(socket, "create_connection", create_connection)

    def resolve(self, host: str, *answers: list[str] | None) -> None:
        """Answer lookups of `host` with these address lists in turn (the last one repeats; None fails)."""
        self.answers[host] = list(answers)


@pytest.fixture
def network(monkeypatch):
    net = FakeNetwork(monkeypatch)
    net.routes[PUBLIC_IP] = "127.0.0.1"
    return net


@pytest.fixture
def release():
    """Set at teardown: handlers that hang or drip wait on it, so no server thread outlives its test."""
    event = threading.Event()
    yield event
    event.set()


def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def compressed_zeros(size: int) -> bytes:
    """`size` zero bytes, gzipped, without ever holding them all."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = bytes(MB)
    return b"".join(compressor.compress(block) for _ in range(size // MB)) + compressor.flush()


@pytest.fixture(scope="module")
def gzip_bomb():
    return compressed_zeros(100 * MB)


def peak_memory(call) -> tuple[int, Exception | None]:
    """Peak bytes allocated while `call` runs, and what it raised."""
    tracemalloc.start()
    try:
        call()
        error = None
    except Exception as exc:
        error = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak, error


# --- Fetching


@pytest.mark.usefixtures("allow_private")
def test_it_returns_the_body(feed_server):
    url = feed_server.route("/feed", body="<rss/>", headers={"Content-Type": "application/rss+xml"})

    response = fetch(url)

    assert response.status == 200
    assert response.content == b"<rss/>"
    assert response.url == url
    assert response.headers["content-type"] == "application/rss+xml"
    assert response.permanent_redirect is None
    assert not response.not_modified


@pytest.mark.usefixtures("allow_private")
def test_it_sends_user_agent_accept_and_encodings(feed_server, settings):
    settings.FEEDS_USER_AGENT = "LivelogTest/9 (+https://example.com)"
    url = feed_server.route("/feed", body="x")

    fetch(url)

    headers = feed_server.requests[-1][1]
    assert headers["User-Agent"] == "LivelogTest/9 (+https://example.com)"
    assert headers["Accept"].startswith("application/rss+xml, application/atom+xml, application/feed+json")
    assert "*/*;q=0.1" in headers["Accept"]
    expected = "gzip, deflate, br" if fetching.brotli else "gzip, deflate"
    assert headers["Accept-Encoding"] == expected
    assert "If-None-Match" not in headers
    assert "If-Modified-Since" not in headers


@pytest.mark.usefixtures("allow_private")
def test_conditional_get_sends_validators_and_304_is_not_modified(feed_server):
    def conditional(handler):
        fresh = handler.headers["If-None-Match"] == '"v1"'
        handler.send_response(304 if fresh else 200)
        handler.send_header("ETag", '"v1"')
        handler.send_header("Content-Length", "0" if fresh else "4")
        handler.end_headers()
        if not fresh:
            handler.wfile.write(b"body")

    url = feed_server.route("/feed", handler=conditional)

    response = fetch(url, etag='"v1"', last_modified="Wed, 01 Jan 2025 00:00:00 GMT")

    assert response.status == 304
    assert response.not_modified
    assert response.content == b""
    assert response.headers["etag"] == '"v1"'
    headers = feed_server.requests[-1][1]
    assert headers["If-None-Match"] == '"v1"'
    assert headers["If-Modified-Since"] == "Wed, 01 Jan 2025 00:00:00 GMT"
    assert fetch(url, etag='"v0"').content == b"body"


@pytest.mark.usefixtures("allow_private")
def test_a_kept_alive_connection_is_reused(feed_server, network):
    url = feed_server.route("/feed", body="x")

    fetch(url)
    fetch(url)

    assert feed_server.hits["/feed"] == 2
    assert network.connects == [("127.0.0.1", feed_server.port)]


@pytest.mark.usefixtures("allow_private")
def test_a_kept_alive_connection_is_not_reused_for_another_address(feed_server, network):
    # The name moves to another address: the open connection to the old one must not carry the request.
    network.resolve("moving.example", ["127.0.0.1"], ["127.0.0.2"])
    feed_server.route("/feed", body="x")
    url = f"http://moving.example:{feed_server.port}/feed"
    fetch(url)

    with pytest.raises(FetchError, match="connection refused"):  # nothing listens on 127.0.0.2
        fetch(url)

    assert network.connects == [("127.0.0.1", feed_server.port), ("127.0.0.2", feed_server.port)]
    assert feed_server.hits["/feed"] == 1


@pytest.mark.usefixtures("allow_private")
def test_threads_fetch_at_the_same_time_each_with_its_own_pools(feed_server):
    for n in range(8):
        feed_server.route(f"/feed{n}", body=f"feed {n}")
    results, errors = [], []

    def worker(n):
        try:
            for _ in range(5):
                results.append(fetch(feed_server.url(f"/feed{n}")).content == f"feed {n}".encode())
        except Exception as exc:
            errors.append(exc)
        finally:
            fetching._pools.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert errors == []
    assert results == [True] * 40


@pytest.mark.usefixtures("allow_private")
def test_it_tries_the_next_address_when_one_refuses(feed_server, network):
    network.resolve("dual.example", ["127.0.0.2", "127.0.0.1"])
    feed_server.route("/feed", body="x")

    assert fetch(f"http://dual.example:{feed_server.port}/feed").content == b"x"
    assert network.connects == [("127.0.0.2", feed_server.port), ("127.0.0.1", feed_server.port)]


@pytest.mark.usefixtures("allow_private")
def test_proxy_environment_variables_are_ignored(feed_server, monkeypatch):
    proxy = f"http://127.0.0.1:{dead_port()}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    url = feed_server.route("/feed", body="direct")

    assert fetch(url).content == b"direct"
    assert feed_server.hits["/feed"] == 1


# --- Statuses


@pytest.mark.usefixtures("allow_private")
@pytest.mark.parametrize(
    ("status", "message"),
    [(500, "HTTP 500 Internal Server Error"), (404, "HTTP 404 Not Found"), (204, "HTTP 204 No Content")],
)
def test_other_statuses_are_fetch_errors(feed_server, status, message):
    url = feed_server.route("/feed", status=status)

    with pytest.raises(FetchError) as raised:
        fetch(url)

    assert str(raised.value) == message
    assert not isinstance(raised.value, RetryLater)


@pytest.mark.usefixtures("allow_private")
def test_429_with_retry_after_seconds_is_retry_later(feed_server):
    url = feed_server.route("/feed", status=429, headers={"Retry-After": "120"})

    with pytest.raises(RetryLater) as raised:
        fetch(url)

    assert raised.value.status == 429
    assert raised.value.retry_after == 120.0
    assert str(raised.value) == "HTTP 429 Too Many Requests (retry after 120 s)"


@pytest.mark.usefixtures("allow_private")
def test_503_with_retry_after_date_is_retry_later(feed_server):
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    url = feed_server.route("/feed", status=503, headers={"Retry-After": when})

    with pytest.raises(RetryLater) as raised:
        fetch(url)

    assert raised.value.status == 503
    assert 85 <= raised.value.retry_after <= 90


@pytest.mark.usefixtures("allow_private")
@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("soon", None),
        ("-5", None),
        ("99999999", 6 * 3600.0),
        ("Wed, 01 Jan 2020 00:00:00 GMT", 0.0),
        (format_datetime(datetime.now(UTC) + timedelta(days=3), usegmt=True), 6 * 3600.0),
    ],
)
def test_retry_after_is_parsed_and_capped(feed_server, header, expected):
    url = feed_server.route("/feed", status=503, headers={"Retry-After": header} if header else {})

    with pytest.raises(RetryLater) as raised:
        fetch(url)

    assert raised.value.retry_after == expected


# --- Redirects


@pytest.mark.usefixtures("allow_private")
def test_permanent_redirects_give_the_final_url(feed_server):
    feed_server.route("/old/feed", status=301, headers={"Location": "../moved/feed"})  # relative
    feed_server.route("/moved/feed", status=308, headers={"Location": feed_server.url("/final")})
    final = feed_server.route("/final", body="x")

    response = fetch(feed_server.url("/old/feed"))

    assert response.content == b"x"
    assert response.url == final
    assert response.permanent_redirect == final


@pytest.mark.usefixtures("allow_private")
@pytest.mark.parametrize("temporary", [302, 303, 307])
def test_one_temporary_hop_gives_no_permanent_redirect(feed_server, temporary):
    feed_server.route("/a", status=301, headers={"Location": "/b"})
    feed_server.route("/b", status=temporary, headers={"Location": "/final"})
    final = feed_server.route("/final", body="x")

    response = fetch(feed_server.url("/a"))

    assert response.url == final
    assert response.permanent_redirect is None


@pytest.mark.usefixtures("allow_private")
def test_a_redirect_loop_is_an_error(feed_server):
    feed_server.route("/a", status=302, headers={"Location": "/b"})
    feed_server.route("/b", status=301, headers={"Location": "/a"})

    with pytest.raises(FetchError, match="too many redirects"):
        fetch(feed_server.url("/a"))

    assert feed_server.hits == {"/a": 1, "/b": 1}


@pytest.mark.usefixtures("allow_private")
def test_five_redirects_are_followed_and_a_sixth_is_an_error(feed_server):
    for n in range(7):
        feed_server.route(f"/r{n}", status=302, headers={"Location": f"/r{n + 1}"})
    feed_server.route("/r5", body="after five")

    assert fetch(feed_server.url("/r0")).content == b"after five"
    feed_server.route("/r5", status=302, headers={"Location": "/r6"})
    with pytest.raises(FetchError, match="too many redirects"):
        fetch(feed_server.url("/r0"))
    assert feed_server.hits["/r6"] == 0


@pytest.mark.usefixtures("allow_private")
def test_a_redirect_without_location_is_an_error(feed_server):
    url = feed_server.route("/feed", status=302)

    with pytest.raises(FetchError, match="HTTP 302 Found"):
        fetch(url)


# --- Time bounds


@pytest.mark.usefixtures("allow_private")
def test_a_server_that_never_answers_times_out(feed_server, settings, release):
    settings.FEEDS_READ_TIMEOUT = 0.3
    url = feed_server.route("/feed", handler=lambda handler: release.wait(10))

    started = time.monotonic()
    with pytest.raises(FetchError, match=r"^timed out after 0.3 s without data$"):
        fetch(url)

    assert time.monotonic() - started < 2


@pytest.mark.usefixtures("allow_private")
def test_a_connection_that_never_completes_times_out(settings):
    settings.FEEDS_CONNECT_TIMEOUT = 0.3
    # A listening socket whose backlog is full: the kernel leaves further connects unanswered.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        try:
            for _ in range(8):
                filler = socket.socket()
                filler.setblocking(False)
                filler.connect_ex(("127.0.0.1", port))
                fillers.append(filler)
            started = time.monotonic()
            with pytest.raises(FetchError, match=r"^connect timed out after 0.3 s$"):
                fetch(f"http://127.0.0.1:{port}/feed")
            assert time.monotonic() - started < 2
        finally:
            for filler in fillers:
                filler.close()


@pytest.mark.usefixtures("allow_private")
def test_a_dripping_body_is_cut_off_at_the_deadline(feed_server, settings, release):
    settings.FEEDS_TOTAL_TIMEOUT = 1
    settings.FEEDS_READ_TIMEOUT = 5

    def drip(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", "100")
        handler.end_headers()
        for _ in range(100):
            handler.wfile.write(b"x")
            if release.wait(0.2):
                return

    url = feed_server.route("/feed", handler=drip)

    started = time.monotonic()
    with pytest.raises(FetchError, match=r"^timed out after 1 s$"):
        fetch(url)

    assert 0.9 <= time.monotonic() - started < 1.5


@pytest.mark.usefixtures("allow_private")
def test_a_server_that_stalls_is_cut_off_at_the_deadline_not_the_read_timeout(feed_server, settings, release):
    settings.FEEDS_TOTAL_TIMEOUT = 1
    settings.FEEDS_READ_TIMEOUT = 5

    def stall(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", "100")
        handler.end_headers()
        handler.wfile.write(b"x")
        release.wait(10)

    url = feed_server.route("/feed", handler=stall)

    started = time.monotonic()
    with pytest.raises(FetchError, match=r"^timed out after 1 s$"):
        fetch(url)

    assert 0.9 <= time.monotonic() - started < 1.5


@pytest.mark.usefixtures("allow_private")
def test_dripping_headers_are_cut_off_at_the_deadline(feed_server, settings, release):
    settings.FEEDS_TOTAL_TIMEOUT = 1
    settings.FEEDS_READ_TIMEOUT = 5

    def drip(handler):
        handler.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        for _ in range(100):
            handler.wfile.write(b"a")
            if release.wait(0.2):
                return

    url = feed_server.route("/feed", handler=drip)

    started = time.monotonic()
    with pytest.raises(FetchError, match=r"^timed out after 1 s$"):
        fetch(url)

    assert 0.9 <= time.monotonic() - started < 1.5


@pytest.mark.usefixtures("allow_private")
def test_the_deadline_spans_all_redirect_hops(feed_server, settings, release):
    settings.FEEDS_TOTAL_TIMEOUT = 1
    settings.FEEDS_READ_TIMEOUT = 5

    def slow_redirect(handler):
        # Each hop alone is well within the read timeout; together they are not within the deadline.
        if release.wait(0.4):
            return
        number = int(handler.path[2:])
        handler.send_response(302)
        handler.send_header("Location", f"/h{number + 1}")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    for n in range(5):
        feed_server.route(f"/h{n}", handler=slow_redirect)

    started = time.monotonic()
    with pytest.raises(FetchError, match=r"^timed out after 1 s$"):
        fetch(feed_server.url("/h0"))

    assert 0.9 <= time.monotonic() - started < 1.5
    assert feed_server.hits["/h3"] == 0


# --- Size bounds and decoding


@pytest.mark.usefixtures("allow_private")
def test_a_body_over_the_cap_is_refused_without_reading_it_all(feed_server, settings):
    settings.FEEDS_MAX_BYTES = MB
    size = 50 * MB
    block = bytes(64 * 1024)
    sent = {"bytes": 0, "finished": False}
    done = threading.Event()

    def huge(handler):
        try:
            handler.send_response(200)
            handler.send_header("Content-Length", str(size))
            handler.end_headers()
            for _ in range(size // len(block)):
                handler.wfile.write(block)
                sent["bytes"] += len(block)
            sent["finished"] = True
        except OSError:
            pass  # the client hung up
        finally:
            done.set()

    url = feed_server.route("/feed", handler=huge)

    peak, error = peak_memory(lambda: fetch(url))

    assert isinstance(error, FetchError)
    assert str(error) == f"response is larger than the limit of {MB} bytes"
    assert peak < 8 * MB
    assert done.wait(5)
    assert not sent["finished"]
    assert sent["bytes"] < 40 * MB


@pytest.mark.usefixtures("allow_private")
def test_a_body_exactly_at_the_cap_is_accepted(feed_server, settings):
    settings.FEEDS_MAX_BYTES = 1000
    url = feed_server.route("/feed", body=b"x" * 1000)

    assert len(fetch(url).content) == 1000
    settings.FEEDS_MAX_BYTES = 999
    with pytest.raises(FetchError, match="limit of 999 bytes"):
        fetch(url)


@pytest.mark.usefixtures("allow_private")
@pytest.mark.parametrize("encoding", ["gzip", "gzip, gzip"])
def test_a_compression_bomb_stops_at_the_cap_without_expanding(feed_server, settings, gzip_bomb, encoding):
    settings.FEEDS_MAX_BYTES = MB
    # Stacked, 100 MB of zeros fit in a few hundred bytes; each layer must stay bounded.
    body = gzip.compress(gzip_bomb) if encoding == "gzip, gzip" else gzip_bomb
    url = feed_server.route("/feed", body=body, headers={"Content-Encoding": encoding})

    peak, error = peak_memory(lambda: fetch(url))

    assert isinstance(error, FetchError)
    assert str(error) == f"response is larger than the limit of {MB} bytes"
    assert peak < 8 * MB


def send_chunked(handler, body: bytes, encoding: str, size: int = 100) -> None:
    handler.send_response(200)
    handler.send_header("Content-Encoding", encoding)
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    for start in range(0, len(body), size):
        chunk = body[start : start + size]
        handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    handler.wfile.write(b"0\r\n\r\n")


DOCUMENT = b"<rss>" + b"<item>caf\xc3\xa9</item>" * 5000 + b"</rss>"


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.usefixtures("allow_private")
@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", gzip.compress(DOCUMENT)),
        ("x-gzip", gzip.compress(DOCUMENT)),
        ("deflate", zlib.compress(DOCUMENT)),
        ("deflate", raw_deflate(DOCUMENT)),  # deflate without its zlib header, as some servers send it
        ("deflate, gzip", gzip.compress(zlib.compress(DOCUMENT))),  # deflate first, then gzip
        ("gzip,deflate", zlib.compress(gzip.compress(DOCUMENT))),
        ("identity", DOCUMENT),
    ],
)
@pytest.mark.parametrize("chunked", [False, True])
def test_content_encodings_are_decoded(feed_server, encoding, body, chunked):
    if chunked:  # many small pieces: decoding must carry its state across them
        url = feed_server.route("/feed", handler=lambda handler: send_chunked(handler, body, encoding))
    else:
        url = feed_server.route("/feed", body=body, headers={"Content-Encoding": encoding})

    assert fetch(url).content == DOCUMENT


@pytest.mark.usefixtures("allow_private")
def test_the_cap_counts_decoded_bytes(feed_server, settings):
    settings.FEEDS_MAX_BYTES = len(DOCUMENT) - 1
    body = gzip.compress(DOCUMENT)
    assert len(body) < settings.FEEDS_MAX_BYTES
    url = feed_server.route("/feed", body=body, headers={"Content-Encoding": "gzip"})

    with pytest.raises(FetchError, match="larger than the limit"):
        fetch(url)


@pytest.mark.usefixtures("allow_private")
def test_a_brotli_body_is_decoded_when_brotli_is_installed(feed_server):
    brotli = pytest.importorskip("brotli")
    assert fetching.brotli is not None, "brotli is installed, so it must be offered and decoded"
    # Highly compressible and sent in small chunks: the decoder still holds output when the input ends.
    document = b"<rss>" + b"<item>hello</item>" * 100_000 + b"</rss>"
    body = brotli.compress(document)
    url = feed_server.route("/feed", handler=lambda handler: send_chunked(handler, body, "br"))

    assert fetch(url).content == document


@pytest.mark.usefixtures("allow_private")
def test_a_brotli_bomb_stops_at_the_cap_without_expanding(feed_server, settings):
    brotli = pytest.importorskip("brotli")
    settings.FEEDS_MAX_BYTES = MB
    url = feed_server.route(
        "/feed", body=brotli.compress(bytes(100 * MB), quality=5), headers={"Content-Encoding": "br"}
    )

    peak, error = peak_memory(lambda: fetch(url))

    assert str(error) == f"response is larger than the limit of {MB} bytes"
    assert peak < 8 * MB


@pytest.mark.usefixtures("allow_private")
@pytest.mark.parametrize(
    ("encoding", "body", "message"),
    [
        ("zstd", b"whatever", "unsupported Content-Encoding: zstd"),
        ("gzip", b"not gzip at all", "cannot decode the body (gzip)"),
    ],
)
def test_a_body_that_cannot_be_decoded_is_an_error(feed_server, encoding, body, message):
    url = feed_server.route("/feed", body=body, headers={"Content-Encoding": encoding})

    with pytest.raises(FetchError) as raised:
        fetch(url)

    assert str(raised.value).startswith(message)


# --- Transport errors


@pytest.mark.usefixtures("allow_private")
def test_a_refused_connection_is_a_fetch_error():
    with pytest.raises(FetchError) as raised:
        fetch(f"http://127.0.0.1:{dead_port()}/feed")

    assert str(raised.value) == "connection refused"


def test_an_unresolvable_host_is_a_fetch_error(network):
    network.resolve("nowhere.example", None)

    with pytest.raises(FetchError) as raised:
        fetch("https://nowhere.example/feed")

    assert str(raised.value) == "cannot resolve nowhere.example"
    assert not isinstance(raised.value, BlockedAddress)


@pytest.mark.usefixtures("allow_private")
def test_a_server_that_hangs_up_is_a_fetch_error(feed_server):
    def hang_up(handler):
        handler.close_connection = True  # and write nothing

    url = feed_server.route("/feed", handler=hang_up)

    with pytest.raises(FetchError, match="HTTP protocol error"):
        fetch(url)


# --- The guard

BLOCKED = [
    "http://127.0.0.1/",
    "http://localhost/feed",
    "http://10.1.2.3/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1/",
    "http://0.0.0.0/",
    "http://224.0.0.1/",
    "http://255.255.255.255/",
    "http://240.0.0.1/",
    "http://192.0.2.1/",
    "http://[::1]/",
    "http://[::]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:8.8.8.8]/",  # mapped addresses are refused whatever they carry
    "http://[::7f00:1]/",  # IPv4-compatible
    "http://[2002:7f00:1::]/",  # 6to4 around 127.0.0.1
    "http://[2002:a9fe:a9fe::]/",  # 6to4 around 169.254.169.254
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",  # Teredo around 127.0.0.1
    "http://[64:ff9b::7f00:1]/",  # NAT64 around 127.0.0.1
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://[fec0::1]/",
    "http://[ff02::1]/",
    "http://[2001:db8::1]/",
    # Numeric host spellings: the resolver normalizes them to 127.0.0.1.
    "http://2130706433/",
    "http://0x7f.1/",
    "http://0x7f000001/",
    "http://017700000001/",
    "http://127.1/",
]


@pytest.mark.parametrize("url", BLOCKED)
def test_the_guard_refuses_addresses_that_are_not_public(url):
    with pytest.raises(BlockedAddress, match="is not a public address"):
        check_url(url)


def test_numeric_hosts_really_are_loopback(feed_server, allow_private):
    # The spellings above are refused for the right reason: they reach 127.0.0.1.
    feed_server.route("/feed", body="x")

    for host in ("2130706433", "0x7f.1", "017700000001", "127.1"):
        assert fetch(f"http://{host}:{feed_server.port}/feed").content == b"x"
    assert feed_server.hits["/feed"] == 4


def test_an_octal_dotted_host_is_refused():
    with pytest.raises(FetchError, match="invalid URL"):
        check_url("http://0177.0.0.1/")


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "javascript:alert(1)", "ftp://example.com/feed", "gopher://example.com/", "feed"],
)
def test_the_guard_refuses_other_schemes(url):
    with pytest.raises(BlockedAddress, match="only http and https"):
        check_url(url)


def test_the_guard_refuses_a_url_without_a_host():
    with pytest.raises(FetchError, match="no host"):
        check_url("http:///feed")


def test_fetch_refuses_a_private_address_before_connecting(feed_server, network):
    url = feed_server.route("/feed", body="x")

    with pytest.raises(BlockedAddress):
        fetch(url)
    with pytest.raises(BlockedAddress):
        fetch(f"http://localhost:{feed_server.port}/feed")

    assert feed_server.hits["/feed"] == 0
    assert network.connects == []


def test_check_url_accepts_and_normalizes_a_public_url(network):
    network.resolve("example.com", [PUBLIC_IP, "2606:2800:220:1:248:1893:25c8:1946"])

    assert check_url("https://example.com") == "https://example.com"
    assert check_url("  HTTPS://Example.COM/feed?x=1#top ") == "https://example.com/feed?x=1"
    assert check_url(f"http://{PUBLIC_IP}/feed") == f"http://{PUBLIC_IP}/feed"


def test_the_guard_refuses_a_host_if_any_address_is_private(network):
    network.resolve("mixed.example", [PUBLIC_IP, "10.0.0.1"])

    with pytest.raises(BlockedAddress, match=r"mixed.example resolves to 10.0.0.1"):
        check_url("https://mixed.example/feed")


@pytest.mark.usefixtures("allow_private")
def test_allowing_private_networks_lifts_only_the_address_check(feed_server):
    url = feed_server.route("/feed", body="x")

    assert check_url("http://10.1.2.3/feed") == "http://10.1.2.3/feed"
    assert fetch(url).content == b"x"
    with pytest.raises(BlockedAddress, match="only http and https"):
        check_url("file:///etc/passwd")


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:{port}/secret",
        "http://localhost:{port}/secret",
        "http://[::ffff:127.0.0.1]:{port}/secret",
        "http://2130706433:{port}/secret",
        "http://169.254.169.254/latest/meta-data/",
        "file:///etc/passwd",
    ],
)
def test_a_redirect_to_a_private_address_is_refused(feed_server, network, target):
    network.resolve("feeds.example", [PUBLIC_IP])
    feed_server.route("/secret", body="internal")
    feed_server.route("/start", status=302, headers={"Location": target.format(port=feed_server.port)})

    with pytest.raises(BlockedAddress, match="^redirect refused: "):
        fetch(f"http://feeds.example:{feed_server.port}/start")

    assert feed_server.hits["/start"] == 1  # the first hop was allowed and reached the server
    assert feed_server.hits["/secret"] == 0
    assert network.connects == [(PUBLIC_IP, feed_server.port)]


def test_dns_is_resolved_once_and_the_checked_address_is_the_one_connected(feed_server, network):
    # DNS rebinding: a public address for the check, loopback for any later lookup.
    network.resolve("rebind.example", [PUBLIC_IP], ["127.0.0.1"])
    feed_server.route("/feed", body="via the checked address")

    response = fetch(f"http://rebind.example:{feed_server.port}/feed")

    assert response.content == b"via the checked address"
    assert network.lookups["rebind.example"] == 1
    assert network.connects == [(PUBLIC_IP, feed_server.port)]
    assert feed_server.requests[-1][1]["Host"] == f"rebind.example:{feed_server.port}"


# --- TLS on a pinned address


@pytest.fixture
def tls_server(tmp_path, pools, monkeypatch):
    """A TLS test server whose certificate names feeds.example, trusted by this test's client only."""
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)

    def certificate(subject, issuer, public_key, signing_key, *, ca, names=()):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(name) for name in names]), critical=False
            )
        return builder.sign(signing_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = certificate("Test CA", "Test CA", ca_key.public_key(), ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = certificate(
        "feeds.example", "Test CA", key.public_key(), ca_key, ca=False, names=["feeds.example"]
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )

    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server_names = []
    server_context.sni_callback = lambda sock, name, context: server_names.append(name)
    client_context = ssl.create_default_context(
        cadata=ca_cert.public_bytes(serialization.Encoding.PEM).decode()
    )
    monkeypatch.setattr(pools, "ssl_context", client_context)

    server = quick_server()
    server.httpd.socket = server_context.wrap_socket(server.httpd.socket, server_side=True)
    server.server_names = server_names
    server.start()
    yield server
    server.stop()


def test_tls_verifies_the_hostname_while_connecting_to_the_checked_address(tls_server, network):
    network.resolve("feeds.example", [PUBLIC_IP], ["127.0.0.1"])
    tls_server.route("/feed", body="secure")

    response = fetch(f"https://feeds.example:{tls_server.port}/feed")

    assert response.content == b"secure"
    assert tls_server.server_names == ["feeds.example"]  # SNI names the host, not the address
    assert network.connects == [(PUBLIC_IP, tls_server.port)]
    assert network.lookups["feeds.example"] == 1


def test_tls_refuses_a_certificate_for_another_hostname(tls_server, network):
    network.resolve("other.example", [PUBLIC_IP])
    tls_server.route("/feed", body="secure")

    with pytest.raises(FetchError, match="TLS certificate error: Hostname mismatch"):
        fetch(f"https://other.example:{tls_server.port}/feed")

    assert tls_server.hits["/feed"] == 0
