"""The benchmark, run small, so it cannot rot: every delivery must arrive.

No timings are asserted (the machine is shared); only that each server under
test, started as the benchmark starts it, delivered every update of the latency
run, of the burst and of the hold test to every connection.
"""

import json
from pathlib import Path

import pytest
import redis
import websocket

from bench.harness import servers
from bench.harness.environment import context
from bench.harness.measure import Plan
from bench.peers import node_ws
from bench.peers.registry import channels_installed
from bench.report import compare as report
from bench.scenarios.compare import benchmark
from pushy.gateway.frames import message_frame, text_frame
from pushy.messages import Update

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
@pytest.mark.timeout(60)
@pytest.mark.skipif(
    not channels_installed(),
    reason="Channels is not installed (make bench installs bench/requirements.txt)",
)
def test_tuned_channels_delivers_everything(redis_server, tmp_path):
    entry = run_small("channels-tuned", redis_server.url, str(tmp_path))
    assert_all_delivered(entry, False)
    assert entry["load"]["samples"] >= 1


def node_or_skip() -> None:
    """Skip unless node.js runs the peer here (installing its packages first)."""
    why = node_ws.problem()
    if why:
        pytest.skip(f"the node.js peer cannot run here: {why}")


@pytest.mark.slow
@pytest.mark.timeout(180)  # the first run installs the peer's packages (npm ci)
def test_node_ws_peer_delivers_everything(redis_server, tmp_path):
    node_or_skip()
    assert_all_delivered(run_small("node-ws", redis_server.url, str(tmp_path)), False)


def receive_json(ws: websocket.WebSocket) -> dict:
    return json.loads(ws.recv())


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_node_ws_peer_frames_an_update_as_pushy_does(redis_server, tmp_path):
    """Byte for byte the frame pushy's gateway sends, so the client counts alike."""
    node_or_skip()
    ctx = context(str(tmp_path), redis_server.url, None)
    server = servers.start("node-ws", ctx)
    publisher = redis.Redis.from_url(redis_server.url)
    ws = websocket.create_connection(server.ws_url, timeout=10)
    try:
        for url in ("/api/item/", "/api/item/7/"):
            ws.send(json.dumps({"action": "subscribe", "url": url}))
            assert receive_json(ws) == {"type": "subscribed", "url": url}
        ws.send(json.dumps({"action": "ping"}))
        assert receive_json(ws) == {"type": "pong"}
        update = Update(
            url="/api/item/7/",
            event="update",
            model="benchapp.item",
            pk=7,
            collection="/api/item/",
            data={"title": "run1 0 1764547200.5", "n": [1, 2.5, None]},
            version=1764547200123456,
        )
        # Neither a control message nor a non-update reaches the client.
        publisher.publish("pushy_:resync", b'{"models": ["benchapp.item"]}')
        publisher.publish("pushy_benchapp.item", b"not json")
        publisher.publish("pushy_benchapp.item", update.encode())
        received = ws.recv()
        assert text_frame(received.encode()) == message_frame(update.as_message())
        # Subscribed to the object and to its collection: sent once, so what
        # follows is the answer to this ping (a second copy would come first).
        ws.send(json.dumps({"action": "ping"}))
        assert receive_json(ws) == {"type": "pong"}
        ws.send(json.dumps({"action": "unsubscribe", "url": "/api/item/7/"}))
        assert receive_json(ws) == {"type": "unsubscribed", "url": "/api/item/7/"}
    finally:
        ws.close()
        publisher.close()
        server.stop()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_authorization_scenario_delivers_everything(redis_server, tmp_path):
    from bench.scenarios.authz import Scenario, benchmark

    small = Scenario.smoke()
    results = benchmark(small, redis_server.url, str(tmp_path))
    for name, entry in results["rules"].items():
        bursts = entry["burst"]
        assert bursts["connect"]["subscribed"] == small.subscribers, (name, bursts)
        for run in (bursts["cold"], bursts["warm"]):
            assert run["delivered"] == run["expected"], (name, run)
            assert run["expected"] == small.subscribers * small.burst
        for reconnect in entry.get("reconnect", {}).get("rounds", []):
            assert reconnect["subscribed"] == small.reconnects, (name, reconnect)
        for kind, run in entry.get("visibility", {}).items():
            assert run["delivered"] == small.subscribers * small.saves, (name, kind)
    # Every user may see every item: one view run per user for the list and per
    # user and item, however many connections and bursts.
    asked = results["rules"]["default"]["burst"]["stats"]["authorizations"]
    assert asked == small.users * (small.burst + 1)
    assert results["rules"]["allow_all"]["burst"]["stats"]["authorizations"] == 0
    # Saves that keep the visibility token are not asked about again; saves
    # that change it are, as are all saves of a model left out of
    # VISIBILITY_FIELDS (updates in a row may share a question).
    visibility = results["rules"]["default"]["visibility"]
    assert visibility["unchanged"]["view_runs"] == 0
    assert 0 < visibility["changing"]["view_runs"] <= small.users * small.saves
    undeclared = results["rules"]["default_undeclared"]["visibility"]
    assert 0 < undeclared["unchanged"]["view_runs"] <= small.users * small.saves


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_failed_measure_logs_the_gateways_threads(redis_server, tmp_path, caplog):
    """What a stuck gateway was doing is in the log of the measure that failed."""
    from bench.scenarios.authz import serving

    ctx = context(str(tmp_path), redis_server.url, None)
    with pytest.raises(RuntimeError, match="a measure that failed"):
        with serving(ctx):
            raise RuntimeError("a measure that failed")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "the gateway when the measure failed" in logged
    # Every thread's stack, the main thread's among them: the event loop's
    # (hub.py) once serving, the gateway's entry (main.py) while starting.
    assert "most recent call first" in logged
    assert "gevent/hub.py" in logged or "pushy/gateway/main.py" in logged
