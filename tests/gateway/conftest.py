import pytest

from tests.gateway.clients import Client
from tests.support.gateway import Gateway, gateway, start_gateway  # noqa: F401


@pytest.fixture(scope="module")
def shared_gateway(redis_server):
    """One gateway with default settings for a module's read-only protocol tests."""
    with Gateway(redis_server.url) as running:
        yield running


@pytest.fixture
def open_client(closing):
    """``open_client(running, **options)``: a ``Client`` of the gateway ``running``,
    closed when the test ends (before the gateways it opened stop)."""
    return lambda running, **options: closing(Client(running.ws_url, **options))
