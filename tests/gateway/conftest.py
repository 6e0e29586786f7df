import pytest

from tests.support.gateway import Gateway, gateway  # noqa: F401


@pytest.fixture(scope="module")
def shared_gateway(redis_server):
    """One gateway with default settings for a module's read-only protocol tests."""
    with Gateway(redis_server.url) as running:
        yield running
