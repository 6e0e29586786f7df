"""Chaos: one real client through a real gateway while Redis is hurt in every way.

The gateway reaches its own private Redis through a TcpProxy. In turn: a
baseline, a poison stream (invalid messages between valid updates), a large
burst, Redis killed with SIGKILL and restarted on the same port, and a black
hole. Every valid update published outside the outages must arrive, in order,
and after each outage exactly one resync must come before anything newer.
"""

import pytest
import redis

from tests.gateway.clients import Client
from tests.gateway.poison import MAX_UPDATE_BYTES, POISON
from tests.support.gateway import Gateway
from tests.support.servers import RedisServer
from tests.support.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]

COLLECTION = "/api/shot/"
SETTINGS = {"REDIS_HEALTH_INTERVAL": 1, "MAX_UPDATE_BYTES": MAX_UPDATE_BYTES}


class Feed:
    """Publishes numbered valid updates straight to Redis (not through the proxy)."""

    def __init__(self, redis_url: str) -> None:
        self.redis = redis.Redis.from_url(redis_url, socket_timeout=5)
        self.next_pk = 1

    def updates(self, count: int, size: int = 0) -> list[int]:
        """Publish ``count`` updates in one pipeline; their pks."""
        pks = list(range(self.next_pk, self.next_pk + count))
        self.next_pk += count
        pipe = self.redis.pipeline(transaction=False)
        for pk in pks:
            pipe.publish("pushy_testapp.shot", self.body(pk, size))
        pipe.execute()
        return pks

    def body(self, pk: int, size: int = 0) -> str:
        data = f',"data":{{"pad":"{"x" * size}"}}' if size else ""
        return (
            f'{{"url":"/api/shot/{pk}/","event":"update","model":"testapp.shot",'
            f'"pk":{pk},"collection":"{COLLECTION}"{data}}}'
        )

    def close(self) -> None:
        self.redis.close()


def receive_updates(client: Client, pks: list[int]) -> None:
    """The next messages are exactly these updates, in order."""
    received = [client.recv() for _ in pks]
    assert [(m["type"], m.get("pk")) for m in received] == [("update", p) for p in pks]


def assert_quiet(client: Client) -> None:
    """Nothing else is waiting for the client (no stray update, no resync)."""
    assert client.request(action="ping") == {"type": "pong"}


def recv_resync_then(client: Client, maybe_lost: list[int]) -> None:
    """A resync, then any of ``maybe_lost`` (published inside the outage)."""
    assert client.recv() == {"type": "resync"}
    assert_quiet_or_late(client, maybe_lost)


def assert_quiet_or_late(client: Client, maybe_lost: list[int]) -> None:
    client.send(action="ping")
    late = []
    while (message := client.recv()) != {"type": "pong"}:
        late.append(message.get("pk"))
    assert late == [pk for pk in maybe_lost if pk in late], late


def test_every_valid_update_outside_outages_arrives():
    server = RedisServer().start()
    proxy = TcpProxy(server.port)
    feed = Feed(server.url)
    try:
        with Gateway(proxy.redis_url(), pushy_settings=SETTINGS) as gw:
            client = Client(gw.ws_url, timeout=20)
            client.subscribe(COLLECTION)

            # Baseline.
            receive_updates(client, feed.updates(20))

            # A poison stream: every invalid message between two valid updates.
            expected = feed.updates(1)
            for poison in POISON:
                feed.redis.publish("pushy_testapp.shot", poison)
                expected += feed.updates(1)
            receive_updates(client, expected)
            assert_quiet(client)

            # Large bursts in one pipeline: many small updates, then 1 MB of
            # updates near this gateway's MAX_UPDATE_BYTES (test_slow_clients.py
            # has 200 of 64 KiB against the default limit).
            receive_updates(client, feed.updates(1000, size=100))
            receive_updates(client, feed.updates(300, size=MAX_UPDATE_BYTES - 600))
            assert_quiet(client)

            # Redis killed with SIGKILL, restarted on the same port.
            server.proc.kill()
            server.proc.wait()
            gw.wait_for_health(503, 10)
            server.stop()
            server.start()
            feed.redis.connection_pool.disconnect()
            maybe_lost = feed.updates(3)  # the gateway may not be back yet
            recv_resync_then(client, maybe_lost)
            assert gw.get("/health")[0] == 200
            receive_updates(client, feed.updates(20))
            assert_quiet(client)

            # A black hole: bytes accepted, nothing answered, nothing closed.
            receive_updates(client, feed.updates(5))
            proxy.blackhole()
            lost = feed.updates(5)
            assert gw.wait_for_health(503, 15) < 15
            proxy.heal()
            recv_resync_then(client, lost)
            receive_updates(client, feed.updates(20))
            assert_quiet(client)

            stats = gw.get_json("/stats")
            assert stats["redis_reconnects"] == 2
            assert stats["redis_ping_timeouts"] >= 1
            assert stats["updates_invalid"] == len(POISON)
            assert stats["listener_restarts"] == 0
            assert stats["slow_closes"] == 0
            client.close()
    finally:
        feed.close()
        proxy.stop()
        server.stop()
