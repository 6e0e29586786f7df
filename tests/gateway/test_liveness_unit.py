"""The listener's PING clock and the once-a-minute log line, with a fake clock."""

import logging

import pytest

from pushy.gateway.listener import POLL_TIMEOUT, Liveness, keepalive_options
from pushy.logs import Throttled


def test_silence_brings_a_ping_then_death_after_as_long_again():
    live = Liveness(5, now=100)
    assert not live.ping_due(104.9) and not live.dead(104.9)
    assert live.ping_due(105)
    live.pinged(105)
    assert not live.ping_due(106)  # one PING at a time
    assert not live.dead(109.9)
    assert live.dead(110)


def test_any_traffic_counts_as_life():
    live = Liveness(5, now=0)
    live.pinged(5)
    live.heard(9)  # a message, not the pong: the connection is alive anyway
    assert not live.dead(12)
    assert live.ping_due(14)


def test_waits_never_overshoot_the_next_deadline():
    live = Liveness(0.5, now=0)
    assert live.wait(0) == 0.5
    assert live.wait(0.4) == pytest.approx(0.1)
    assert live.wait(0.7) == 0.0
    assert Liveness(60, now=0).wait(0) == POLL_TIMEOUT


def test_keepalive_is_short_where_the_platform_allows():
    options = keepalive_options()
    assert options and max(options.values()) <= 5


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_throttled_logs_once_a_minute_and_counts_the_rest(caplog):
    clock = FakeClock()
    line = Throttled(logging.getLogger("pushy.test"), clock=clock)
    with caplog.at_level(logging.WARNING, logger="pushy.test"):
        assert line.log(logging.WARNING, "bad message on %s", "a")
        for _ in range(99):
            clock.now += 0.5
            assert not line.log(logging.WARNING, "bad message on %s", "b")
        clock.now = 60.0
        assert line.log(logging.WARNING, "bad message on %s", "c")
    assert [r.getMessage() for r in caplog.records] == [
        "bad message on a",
        "bad message on c (and 99 more like it not logged since the last one)",
    ]
