"""A rolling restart of two gateways through the nginx block docs/deployment.md shows.

nginx counts a refused connect against a gateway; with ``max_fails`` above 0 the
gateway is skipped for ``fail_timeout`` and counted live again only when a later
request to it *finishes*. A WebSocket finishes when it closes, so a gateway that
refused one handshake while it restarted stayed "down" for nginx long after it
was back; restarting the other one then left nginx with no live upstream, and
it answered 502 without trying either. The documented block says
``max_fails=0``; these tests hold it to that.
"""

import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.gateway.clients import RawClient
from tests.scaleout.rolling_restart import WS_PATH, RollingRestart
from tests.support.gateway import Gateway
from tests.support.nginx import Nginx, documented_config
from tests.support.servers import free_port

pytestmark = pytest.mark.timeout(90)

# A client closed by a gateway's SIGTERM is back within this (its backoff is at
# most 0.25 s), and a restarted gateway takes new handshakes within this after
# its /health answers 200.
BOUND = 2.0


def old_config() -> str:
    """The block the guide showed before: ``max_fails=1 fail_timeout=5s``."""
    text = documented_config()
    text = re.sub(
        r"(server 127\.0\.0\.1:800[1-9])[^;\n]*;",
        r"\1 max_fails=1 fail_timeout=5s;",
        text,
    )
    return text.replace("        proxy_connect_timeout 2s;\n", "")


def test_the_old_block_is_what_the_guide_showed():
    text = old_config()
    assert "server 127.0.0.1:8002 max_fails=1 fail_timeout=5s;" in text
    assert "proxy_connect_timeout" not in text


def test_rolling_restart_through_the_documented_block(pushy_redis):
    report = RollingRestart(pushy_redis.url, clients=40, settle=BOUND).run()
    print(report.summary())
    first, second = report.phases
    # At every moment one gateway was up and answering /health 200: gateway 1
    # was back before gateway 2 was stopped. So no handshake may fail.
    assert first.healthy < second.signalled
    failed = [a for a in report.reconnects() if a.status != 101]
    assert not failed, (report.summary(), failed[:5], report.nginx_errors[-2000:])
    for phase in report.phases:
        # Every client it closed got back in through nginx, on the other gateway.
        assert phase.reconnected_all is not None, report.summary()
        assert phase.reconnected_all - phase.signalled < BOUND, report.summary()
        # Once back, it takes new handshakes at once: half of them, round-robin.
        assert phase.probes_ok == 10, report.summary()
        assert phase.probe_seconds < BOUND, report.summary()
        assert phase.probes_here >= 3, report.summary()
    assert report.longest_away() < BOUND, report.summary()


def test_the_old_block_answers_502_while_a_gateway_is_up(pushy_redis):
    """The operator's report, reproduced: why the documented block changed."""
    report = RollingRestart(pushy_redis.url, config=old_config(), settle=BOUND).run()
    print(report.summary())
    first, second = report.phases
    assert first.healthy < second.signalled
    # Gateway 1 refused a reconnect while it was down, so nginx kept it
    # "disabled" after it was back: the fresh handshakes all went to gateway 2.
    assert first.probes_here <= 1, report.summary()
    # Then gateway 2 was stopped and nginx saw no live upstream at all.
    assert report.count(502, since=second.signalled) > 0, report.summary()
    assert "no live upstreams" in report.nginx_errors
    assert second.reconnected_all is None, report.summary()


@contextmanager
def black_hole() -> Iterator[int]:
    """A port whose listening queue is full, so the kernel drops further SYNs.

    A connect to it hangs, as to a gateway host that is powered off or behind a
    firewall that drops packets.
    """
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)  # room for one connection, which is never accepted
        with socket.create_connection(listener.getsockname(), timeout=2):
            yield listener.getsockname()[1]


def test_a_host_that_drops_connects_costs_a_handshake_the_connect_timeout(
    pushy_redis,
):
    """With max_fails=0 a dead host is tried every time: proxy_connect_timeout
    bounds what that costs, and the handshake goes on to a live gateway."""
    with (
        black_hole() as dead_port,
        Gateway(pushy_redis.url) as gw,
        Nginx([dead_port, gw.port], site_port=free_port()) as nginx,
    ):
        results: list[tuple[float, str]] = []

        def handshake() -> None:
            start = time.monotonic()
            raw = RawClient("127.0.0.1", nginx.port, timeout=10)
            try:
                head = raw.upgrade(path=WS_PATH, Origin=nginx.url.rstrip("/"))
                results.append((time.monotonic() - start, head.split(" ", 2)[1]))
            finally:
                raw.close()

        threads = [threading.Thread(target=handshake) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(15)
        assert [status for _, status in results] == ["101"] * 4, results
        slowest = max(seconds for seconds, _ in results)
        # Round-robin sent two of them to the black hole first: 2 s each.
        assert 1.5 < slowest < 4, results
        assert "upstream timed out" in nginx.log()


@pytest.mark.skipif(
    not os.environ.get("PUSHY_NGINX_EXPERIMENT"),
    reason="the before/after measurement; set PUSHY_NGINX_EXPERIMENT=1 and use -s",
)
@pytest.mark.timeout(600)
@pytest.mark.parametrize("which", ["old", "documented"])
def test_measure(pushy_redis, which):
    """Each client waits up to 45 s to be back: how long nginx kept them out."""
    config = old_config() if which == "old" else None
    report = RollingRestart(pushy_redis.url, config=config, settle=45).run()
    print(f"\n== {which} block\n{report.summary()}")
