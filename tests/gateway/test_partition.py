"""A silent partition between the gateway and Redis is noticed in seconds.

A TcpProxy of our own sits between a real runpushy and the real Redis; its
black hole keeps every socket open and answers nothing, as a dropped network
path does.
"""

import time

import pytest

from tests.gateway.clients import Client, publish, shot_update
from tests.support.gateway import Gateway
from tests.support.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.timeout(60), pytest.mark.slow]

# The bound the issue sets, with the default REDIS_HEALTH_INTERVAL.
DETECTION_BOUND = 15.0


def test_a_black_hole_is_detected_within_15s_with_the_defaults(redis_server):
    with TcpProxy(redis_server.port) as proxy, Gateway(proxy.redis_url()) as gw:
        client = Client(gw.ws_url, timeout=30)
        client.subscribe("/api/shot/")
        publish(redis_server.url, shot_update(1))
        assert client.recv()["pk"] == 1

        proxy.blackhole()
        started = time.monotonic()
        # /health may say so first (its own lookup gets no answer: issue 20);
        # the subscription itself is counted lost within the bound too.
        assert gw.wait_for_health(503, DETECTION_BOUND) < DETECTION_BOUND
        while gw.get_json("/stats")["redis_subscribed"]:
            assert time.monotonic() - started < DETECTION_BOUND
            time.sleep(0.05)
        gw.wait_for_log("no answer to PING within 5s")
        publish(redis_server.url, shot_update(2))  # lost: the resync covers it

        proxy.heal()
        assert client.recv() == {"type": "resync"}
        assert gw.get("/health")[0] == 200
        publish(redis_server.url, shot_update(3))
        assert client.recv()["pk"] == 3
        stats = gw.get_json("/stats")
        assert stats["redis_ping_timeouts"] == 1
        assert stats["redis_reconnects"] == 1
        client.close()


def test_a_quiet_healthy_subscription_is_kept_and_a_short_interval_is_fast(
    redis_server,
):
    settings = {"REDIS_HEALTH_INTERVAL": 1}
    with (
        TcpProxy(redis_server.port) as proxy,
        Gateway(proxy.redis_url(), pushy_settings=settings) as gw,
    ):
        client = Client(gw.ws_url, timeout=20)
        client.subscribe("/api/shot/")
        # The property is about time passing: idle for three intervals, each
        # PING is answered and nothing is dropped.
        time.sleep(3)
        stats = gw.get_json("/stats")
        assert stats["redis_ping_timeouts"] == 0 and stats["redis_reconnects"] == 0
        # No connection was replaced: the subscription, and the side client's
        # (version lookups, presence heartbeats: two when they overlap).
        assert 2 <= proxy.accepted <= 3, proxy.accepted

        proxy.blackhole()
        assert gw.wait_for_health(503, 5) < 3  # within 2 intervals, plus slack
        proxy.heal()
        assert client.recv() == {"type": "resync"}
        publish(redis_server.url, shot_update(4))
        assert client.recv()["pk"] == 4
        client.close()
