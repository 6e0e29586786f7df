"""The black-hole proxy the partition tests rely on does what it says."""

import time

import pytest
import redis

from tests.support.servers import RedisServer
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.timeout(30)


def test_forwards_black_holes_and_heals(redis_server):
    with TcpProxy(redis_server.port) as proxy:
        client = redis.Redis.from_url(proxy.redis_url(), socket_timeout=0.5)
        assert client.ping()
        proxy.blackhole()
        with pytest.raises(redis.TimeoutError):
            client.set("k", "v")  # sent, never answered, connection left open
        proxy.heal()
        # The held SET reaches Redis once the path heals.
        direct = redis.Redis.from_url(redis_server.url)
        deadline = time.monotonic() + 5
        while direct.get("k") != b"v" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert direct.get("k") == b"v"
        client = redis.Redis.from_url(proxy.redis_url(), socket_timeout=2)
        assert client.ping()
        assert proxy.accepted == 2
        direct.close()
        client.close()


def test_new_connections_are_accepted_but_silent_while_black_holed(redis_server):
    with TcpProxy(redis_server.port) as proxy:
        proxy.blackhole()
        client = redis.Redis.from_url(proxy.redis_url(), socket_timeout=0.5)
        with pytest.raises(redis.TimeoutError):
            client.ping()
        client.close()


def test_a_killed_upstream_closes_the_client_side():
    server = RedisServer().start()
    try:
        with TcpProxy(server.port) as proxy:
            client = redis.Redis.from_url(proxy.redis_url(), socket_timeout=2)
            assert client.ping()
            server.proc.kill()
            server.proc.wait()
            with pytest.raises(redis.ConnectionError):
                client.ping()
            client.close()
    finally:
        server.stop()
