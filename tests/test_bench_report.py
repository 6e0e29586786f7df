"""The benchmark's report on made-up figures: best peers, ratios, targets, README.

No process runs here; tests/test_bench_smoke.py runs the servers.
"""

from __future__ import annotations

import pytest

from bench.report import compare as report
from bench.report import readme
from bench.report.metrics import burst_row, latency_row, memory_row

pytestmark = pytest.mark.timeout(30)

COST = {"wall_s": 10.0, "server_cpu_s": 1.0, "client_cpu_s": 1.0, "redis_cpu_s": 0.1}


def latency(p50: float, p99: float, lost: int = 0) -> dict:
    expected = 200 * 1000
    return {
        "saves": 200,
        "rate": 20,
        "delivered": expected - lost,
        "expected": expected,
        "lost": lost,
        "late": 0,
        "updates_reaching_all": 200,
        "first": {"p50_ms": p50 / 4, "p99_ms": p99 / 4, "max_ms": p99},
        "last": {"p50_ms": p50, "p99_ms": p99, "max_ms": p99},
        "server_cpu_per_delivery_us": 10.0,
        **COST,
    }


def burst(per_second: int, lost: int = 0) -> dict:
    expected = 200 * 1000
    return {
        "updates": 200,
        "delivered": expected - lost,
        "expected": expected,
        "lost": lost,
        "lost_total": lost,
        "late": 0,
        "per_second": per_second,
        "runs_per_second": [per_second] * 3,
        "server_cpu_per_delivery_us": 1e6 / per_second,
        **COST,
    }


def connect(kib: float) -> dict:
    return {
        "subscribed": 1000,
        "failed": 0,
        "seconds": 1.0,
        "bytes_per_connection": round(kib * 1024),
        **COST,
    }


def server(lat: dict, bursts: dict, kib: float) -> dict:
    row = {"n": 1000, "connect": connect(kib), "latency": lat, "burst": bursts}
    load = {"before": 0.4, "mean": 1.2, "max": 1.9, "samples": 30}
    return {"sizes": {"1000": row}, "load": load, "seconds": 60.0}


def results(**overrides: dict) -> dict:
    servers = {
        "floor": server(latency(16, 56), burst(70_000), 22.0),
        "node-ws": server(latency(15, 23), burst(100_000), 9.5),
        "pushy": server(latency(18, 82), burst(500_000), 21.0),
        # Lost a third: the fastest burst and the shortest p99, but not whole.
        "channels": server(latency(5, 10, lost=70_000), burst(900_000, 70_000), 41),
        "channels-tuned": {"skipped": "channels is not installed"},
    }
    servers.update(overrides)
    plan = {
        "servers": list(servers),
        "sizes": [1000],
        "latency_rate": 20,
        "burst": 200,
        "burst_repeats": 3,
        "burst_repeat_within": 30.0,
        "hold": 0,
        "max_size": {"channels": 1000},
    }
    meta = {
        "commit": "abc1234",
        "started": 1764547200.0,
        "seconds": 600.0,
        "cpus": 2,
        "machine": {"cpu": "Test CPU", "memory_gib": 24, "kernel": "6", "python": "3"},
        "load_before": [0.4, 0.3, 0.2],
        "plan": plan,
    }
    return {"servers": servers, "meta": meta}


def test_the_best_peer_is_the_best_that_lost_nothing():
    figures = results()
    row = latency_row(1000, "last", 20)
    assert row.best(figures) == [("node-ws", 15), ("node-ws", 23)]
    assert row.ratios(figures, "pushy") == pytest.approx([18 / 15, 82 / 23])
    (best,) = burst_row(1000, 200).best(figures)
    assert best == ("node-ws", 100_000)  # higher is better; Channels lost some
    assert burst_row(1000, 200).ratios(figures, "pushy") == [5.0]
    assert memory_row(1000).best_text(figures) == "9.5 KiB (node.js ws)"


def test_p50_and_p99_may_have_different_best_peers():
    figures = results(floor=server(latency(12, 56), burst(70_000), 22.0))
    row = latency_row(1000, "last", 20)
    assert row.best(figures) == [("floor", 12), ("node-ws", 23)]
    assert row.best_text(figures) == "12 ms (gevent floor) / 23 ms (node.js ws)"


def test_the_report_shows_ratios_skips_and_p99_targets():
    text = report.markdown(results())
    assert "**Channels tuned was not run**: channels is not installed." in text
    line = next(x for x in text.splitlines() if "last delivery p50 / p99" in x)
    assert "| 15 ms / 23 ms (node.js ws) |" in line
    assert "18 / 82 ms<br><sub>1.20× / 3.57×</sub>" in line
    assert "not run" in line
    assert "- **missed**: last delivery at N=1,000, 20 saves/s: p99 82 ms" in text
    # The first delivery's p99: 82 / 4 against the floor's 56 / 4.
    assert "- **missed**: first delivery at N=1,000: p99 20 ms = 1.46×" in text
    assert "- **missed**: memory per idle connection at N=1,000: 21.0 KiB" in text
    assert "- met: burst at N=1,000: 500,000/s = 5.00× the best peer's" in text
    assert "| gevent floor | 0.40 | 1.20 / 1.90 | 1.0 |" in text


def test_the_readme_section_states_machine_date_and_ratios():
    text = readme.section(results())
    assert "on 2025-12-01 on Test CPU, 2 cores" in text
    assert (
        "| 1,000 | last delivery at 20 updates/s, p50 / p99 | 18 ms / 82 ms "
        "| 15 ms / 23 ms (node.js ws) | 1.20× / 3.57× |"
    ) in text
    assert "Channels tuned was not run: channels is not installed." in text


def test_without_node_the_peer_is_skipped_with_the_reason(monkeypatch):
    from bench.peers import node_ws as node_peer
    from bench.scenarios.compare import unavailable

    monkeypatch.setattr(node_peer.shutil, "which", lambda name: None)
    assert unavailable(["node-ws", "floor"]) == {
        "node-ws": "node.js is not installed (apt-get install nodejs npm)"
    }


def test_an_npm_that_fails_skips_the_peer_with_its_last_line(monkeypatch):
    from bench.peers import node_ws as node_peer

    programs = {"node": "/usr/bin/node", "npm": "/bin/false"}
    monkeypatch.setattr(node_peer.shutil, "which", programs.get)
    monkeypatch.setattr(node_peer, "_installed", lambda: False)
    assert node_peer.problem() == "npm ci failed (no registry?): no output"
