import pytest

from tests.feedserver import FeedServer


@pytest.fixture
def feed_server():
    server = FeedServer().start()
    yield server
    server.stop()


@pytest.fixture
def allow_private(settings):
    """Tests of behaviour other than the address guard fetch from 127.0.0.1."""
    settings.FEEDS_ALLOW_PRIVATE_NETWORKS = True
