"""``python -m bench.rolling_restart``, run small so it cannot rot: a rolling
restart of two gateways costs refetches with the history off and none with it
on, and no page misses an update either way (no timing is asserted)."""

from __future__ import annotations

import pytest

from bench.scenarios.rolling_restart import one_run
from tests.support.gateway import Gateway

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.mark.parametrize("history", [0, 1000])
def test_the_rolling_restart_bench_runs_small(pushy_redis, closing, history):
    def start_gateway(port=None, **pushy_settings):
        return closing(
            Gateway(pushy_redis.url, pushy_settings=pushy_settings, port=port)
        )

    result = one_run(start_gateway, pushy_redis.url, history, clients=6, rate=20)
    assert result["reconnects"] >= 6 and result["saves"] > 20
    assert result["missed"] == 0 and result["duplicates"] == 0
    if history:
        assert result["resyncs"] == 0 and result["replays"] > 0
    else:
        assert result["resyncs"] > 0 and result["replays"] == 0
