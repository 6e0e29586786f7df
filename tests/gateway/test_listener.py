"""The Redis subscription survives a Redis restart: resync, then updates again."""

import time

import pytest

from tests.gateway.clients import Client, publish, shot_update
from tests.support.gateway import Gateway
from tests.support.servers import RedisServer

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]


def wait_for_status(gw: Gateway, path: str, status: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gw.get(path)[0] == status:
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} never answered {status}")


def test_redis_restart_sends_resync_and_updates_flow_again():
    redis_server = RedisServer().start()
    try:
        with Gateway(redis_server.url) as gw:
            client = Client(gw.ws_url, timeout=20)
            client.subscribe("/api/shot/")
            assert gw.get("/health")[0] == 200

            redis_server.stop()
            wait_for_status(gw, "/health", 503)
            assert gw.get_json("/health")["redis"] is False
            redis_server.start()

            assert client.recv() == {"type": "resync"}
            assert gw.get("/health")[0] == 200
            publish(redis_server.url, shot_update(11))
            assert client.recv()["pk"] == 11
            assert gw.get_json("/stats")["redis_reconnects"] == 1
            assert "Redis subscription to" in gw.wait_for_log("is back")
            client.close()
    finally:
        redis_server.stop()


def test_gateway_starts_without_redis_and_subscribes_when_it_appears():
    redis_server = RedisServer()  # not started yet: its port refuses connections
    try:
        with Gateway(redis_server.url) as gw:
            assert "(not reachable yet)" in gw.startup_output
            assert gw.get("/health")[0] == 503
            client = Client(gw.ws_url, timeout=20)
            client.subscribe("/api/shot/")
            redis_server.start()
            assert client.recv() == {"type": "resync"}
            publish(redis_server.url, shot_update(12))
            assert client.recv()["pk"] == 12
            client.close()
    finally:
        redis_server.stop()


class UnixRedisServer(RedisServer):
    """A private Redis that also listens on a Unix socket in its directory."""

    @property
    def unix_url(self) -> str:
        return f"unix://{self.dir}/redis.sock"

    def command(self) -> list[str]:
        return [*super().command(), "--unixsocket", f"{self.dir}/redis.sock"]


def test_a_unix_socket_redis_url_subscribes():
    # TCP keepalive options must not be passed to a Unix socket connection.
    redis_server = UnixRedisServer().start()
    try:
        with Gateway(redis_server.unix_url) as gw:
            assert "(subscribed)" in gw.startup_output
            client = Client(gw.ws_url, timeout=10)
            client.subscribe("/api/shot/")
            publish(redis_server.url, shot_update(13))
            assert client.recv()["pk"] == 13
            client.close()
    finally:
        redis_server.stop()
