"""The benchmark, run small, so it cannot rot: every delivery must arrive.

No timings are asserted (the machine is shared); only that each server under
test, started as the benchmark starts it, delivered every update of the latency
run, of the burst and of the hold test to every connection.
"""

from pathlib import Path

import pytest

from bench import report
from bench.__main__ import benchmark
from bench.run import Plan
from bench.servers import channels_installed

N = 20


def run_small(server: str, redis_url: str, workdir: str) -> dict:
    plan = Plan.smoke()
    plan.servers = [server]
    results = benchmark(plan, redis_url, workdir)
    return results["servers"][server]


def assert_all_delivered(entry: dict, hold: bool) -> None:
    row = entry["sizes"][str(N)]
    assert "error" not in row, row["error"]
    assert row["connect"]["subscribed"] == N, row["connect"]

    latency = row["latency"]
    assert latency["expected"] == N * latency["saves"]
    assert latency["delivered"] == latency["expected"], latency
    assert latency["lost"] == 0
    assert latency["updates_reaching_all"] == latency["saves"]

    burst = row["burst"]
    assert burst["expected"] == N * burst["updates"]
    assert burst["delivered"] == burst["expected"], burst
    assert burst["extra"] == 0

    if hold:
        held = entry["hold"]
        assert "error" not in held, held["error"]
        assert held["connect"]["subscribed"] == held["n"]
        assert held["delivered"] == held["expected"] == held["n"], held


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_floor_delivers_everything(redis_server, tmp_path):
    plan = Plan.smoke()
    plan.servers = ["floor"]
    results = benchmark(plan, redis_server.url, str(tmp_path))
    assert_all_delivered(results["servers"]["floor"], True)
    # The report is written from these figures too, so it cannot rot either.
    report.write(results, Path(tmp_path))
    text = (Path(tmp_path) / "RESULTS.md").read_text()
    assert f"| {N} subscribers, burst of {plan.burst} updates" in text


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_pushy_gateway_delivers_everything(redis_server, tmp_path):
    assert_all_delivered(run_small("pushy", redis_server.url, str(tmp_path)), False)


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.skipif(
    not channels_installed(),
    reason="Channels is not installed (make bench installs bench/requirements.txt)",
)
def test_channels_baseline_delivers_everything(redis_server, tmp_path):
    assert_all_delivered(run_small("channels", redis_server.url, str(tmp_path)), False)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_authorization_scenario_delivers_everything(redis_server, tmp_path):
    from bench.authz import Scenario, benchmark

    small = Scenario.smoke()
    results = benchmark(small, redis_server.url, str(tmp_path))
    for name, entry in results["rules"].items():
        bursts = entry["burst"]
        assert bursts["connect"]["subscribed"] == small.subscribers, (name, bursts)
        for run in (bursts["cold"], bursts["warm"]):
            assert run["delivered"] == run["expected"], (name, run)
            assert run["expected"] == small.subscribers * small.burst
        for reconnect in entry["reconnect"]["rounds"]:
            assert reconnect["subscribed"] == small.reconnects, (name, reconnect)
    # Every user may see every item: one view run per user for the list and per
    # user and item, however many connections and bursts.
    asked = results["rules"]["default"]["burst"]["stats"]["authorizations"]
    assert asked == small.users * (small.burst + 1)
    assert results["rules"]["allow_all"]["burst"]["stats"]["authorizations"] == 0
