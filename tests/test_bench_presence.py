"""``python -m bench.presence``, run small so it cannot rot: every member hears
every probe (no timing is asserted: the machine is shared)."""

from __future__ import annotations

import pytest

from bench.scenarios.presence import measure

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(120),
    pytest.mark.django_db(transaction=True),
]


def test_the_presence_bench_runs_small(redis_server):
    result = measure(redis_server.url, members=20, rate=20, seconds=1, probes=2)
    assert result["members"] == 20 and result["changes"] >= 15
    assert result["reach_seconds"]["max"] < 30  # each probe reached every member
    assert set(result["cpu_per_change_ms"]) == {
        "gateway_a_members",
        "gateway_b_churners",
    }
