"""bench.scale, run small, so it cannot rot: every connection gets the update.

200 connections on ``runpushy --workers 2`` from 2 loopback source addresses
(4 load-client processes); no timing is asserted (the machine is shared).
"""

import pytest

from bench.scenarios.scale import Plan, benchmark, plan_for, sources


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_every_connection_gets_the_update(tmp_path):
    plan = Plan.smoke()
    results = benchmark(plan, str(tmp_path))
    (row,) = results["scenarios"]
    assert "error" not in row, row["error"]
    assert row["connect"]["subscribed"] == 200, row["connect"]
    assert row["connect"]["sources"] == {"127.0.0.2": 100, "127.0.0.3": 100}
    for fan_out in (row["fan_out_cold"], row["fan_out"]):
        assert fan_out["delivered"] == fan_out["connections"] == 200, fan_out
        assert fan_out["short_connections"] == fan_out["closed"] == 0
    assert len(row["memory"]["gateway_rss_by_process"]) == 2


def test_the_issues_scenarios_where_the_limit_allows_them():
    plan = plan_for(65536, 2)
    assert [(s.n, s.workers) for s in plan.scenarios] == [
        (50_000, 1),
        (100_000, 2),
        (20_000, 1),  # all from one source address, for comparison
    ]
    assert all(s.max_connections == 58_883 for s in plan.scenarios)


def test_scenarios_derived_from_a_lower_limit():
    plan = plan_for(20_000, 2)
    assert [(s.n, s.workers, s.max_connections) for s in plan.scenarios] == [
        (17_900, 1, 17_900),
        (34_000, 2, 17_900),
        (100_000, 6, 17_900),
        (17_900, 1, 17_900),
    ]
    assert plan.scenarios[-1].per_source == 17_900
    assert "20000" in plan.choice


def test_source_addresses_stay_under_the_ephemeral_ports():
    plan = plan_for(20_000, 2)
    assert sources(100_000, plan) == [f"127.0.0.{i}" for i in range(2, 22)]
    assert sources(17_900, plan) == [f"127.0.0.{i}" for i in range(2, 6)]
    assert sources(17_900, plan, 17_900) == ["127.0.0.2"]
    assert sources(200, Plan.smoke()) == ["127.0.0.2", "127.0.0.3"]
