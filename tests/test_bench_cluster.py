"""``python -m bench.cluster``, run small so it cannot rot: each layout (one
Redis; the 3 + 3 cluster, on Redis 7 or later) delivers every update of the
latency run and of the bursts to every watcher of the mix, and every figure the
table and the sizing model read is there (no timing is asserted: the machine
is shared)."""

from __future__ import annotations

import shutil

import pytest

from bench.report import cluster as report
from bench.scenarios.cluster import SMOKE, Plan, benchmark, mix, watchers

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def run_small(layout: str, tmp_path) -> dict:
    plan = Plan(**SMOKE)
    plan.layouts = layout
    return benchmark(plan, str(tmp_path))


def assert_complete(entry: dict) -> None:
    assert "error" not in entry and "skipped" not in entry, entry
    connect = entry["connect"]
    assert connect["connections"] == SMOKE["connections"]
    # Every URL of the mix has watchers: the latency saves reach items 1-10.
    assert set(connect["watchers"]) == set(mix())
    latency = entry["latency"]
    assert latency["lost"] == 0 and latency["late"] == 0
    assert latency["delivered"] == latency["expected"] > 0
    assert latency["updates_reaching_all"] == SMOKE["latency_saves"]
    assert latency["last"]["p99_ms"] >= latency["first"]["p50_ms"] > 0
    burst = entry["burst"]
    assert burst["lost_total"] == 0 and burst["closed"] == 0
    assert burst["delivered"] == burst["expected"] > 0
    assert burst["per_second"] > 0 and burst["gateway_us_per_delivery"] is not None
    for gateways in (1, 2):
        phase = entry[f"receive_{gateways}"]
        assert phase["gateways"] == gateways
        for kind in ("singles", "burst"):
            # Each gateway received each update once.
            assert phase[kind]["received"] == gateways * SMOKE["receive"]
            assert phase[kind]["redis"]["publishes"] >= SMOKE["receive"]


def test_one_redis_row_runs_small(tmp_path):
    results = run_small("single", tmp_path)
    entry = results["layouts"]["single"]
    assert_complete(entry)
    assert len(entry["burst"]["redis"]["masters"]) == 1
    text = report.render(results)
    assert "| burst of 20 updates: deliveries/s (median) |" in text
    assert "Sizing" not in text  # the model reads the cluster's figures


def test_cluster_row_and_sizing_run_small(tmp_path):
    if not shutil.which("redis-server"):
        pytest.skip("no redis-server")
    results = run_small("cluster", tmp_path)
    entry = results["layouts"]["cluster"]
    if "skipped" in entry:  # .ci/run installs Redis 7 where none is
        pytest.skip(entry["skipped"])
    assert_complete(entry)
    masters = entry["burst"]["redis"]["masters"]
    assert len(masters) == 3
    # The 20 saved items' URLs fall in buckets of more than one master.
    assert sum(m["publishes"] > 0 for m in masters) >= 2
    sized = report.model(results)
    for kind in ("singles", "burst"):
        assert sized[kind]["interest"]["feasible"]
        assert sized[kind]["interest"]["gateways"] >= 1
    assert "## Sizing" in report.render(results)


def test_watchers_follow_the_round_robin():
    urls = ["/a/", "/b/", "/b/"]
    assert watchers(urls, [4, 2]) == {"/a/": 3, "/b/": 3}
    assert mix().count("/api/item/") == 10 and len(set(mix())) == 11
