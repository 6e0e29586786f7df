"""/health, /stats, /metrics, and graceful shutdown on SIGTERM and SIGINT."""

import signal
import time

import pytest

from tests.gateway.clients import Client, RawClient, publish, shot_update
from tests.support.gateway import Gateway

pytestmark = pytest.mark.timeout(60)


def test_health(shared_gateway):
    status, body = shared_gateway.get("/health")
    assert status == 200
    assert shared_gateway.get_json("/health") == {"status": "ok", "redis": True}


def test_stats_counts_connections_subscriptions_and_traffic(gateway, pushy_redis):
    client = Client(gateway.ws_url)
    client.subscribe("/api/shot/")
    client.subscribe("/api/shot/1/")
    publish(pushy_redis.url, shot_update(1))
    client.recv()
    client.request(action="dance")
    stats = gateway.get_json("/stats")
    assert stats["connections"] == 1
    assert stats["subscriptions"] == 2
    assert stats["updates_in"] == 1
    assert stats["frames_out"] == 4  # two acks, one update, one error
    assert stats["messages_in"] == 3
    assert stats["errors"] == 1
    assert stats["slow_closes"] == 0
    assert stats["connections_total"] == 1
    assert stats["uptime"] > 0
    client.close()
    deadline = time.monotonic() + 5
    while gateway.get_json("/stats")["connections"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert gateway.get_json("/stats")["subscriptions"] == 0


def test_metrics_in_prometheus_text_format(shared_gateway):
    client = Client(shared_gateway.ws_url)
    client.subscribe("/api/shot/")
    status, text = shared_gateway.get("/metrics")
    client.close()
    assert status == 200
    lines = text.splitlines()
    assert "# TYPE pushy_gateway_connections gauge" in lines
    assert "# TYPE pushy_gateway_frames_out_total counter" in lines
    samples = dict(line.split(" ") for line in lines if not line.startswith("#"))
    assert int(samples["pushy_gateway_connections"]) >= 1
    assert int(samples["pushy_gateway_redis_subscribed"]) == 1
    assert all(float(value) >= 0 for value in samples.values())
    # Where latency tails show first: the loop's lag and the collector's pauses.
    for name in ("loop_lag_max_seconds", "gc_pause_max_seconds"):
        assert f"# TYPE pushy_gateway_{name} gauge" in lines
        assert float(samples[f"pushy_gateway_{name}"]) < 5
    assert "pushy_gateway_loop_stalls_total" in samples


def test_sigusr1_writes_every_threads_stack_and_the_gateway_serves_on(gateway):
    import os

    client = Client(gateway.ws_url)
    client.subscribe("/api/shot/")
    os.kill(gateway.pid, signal.SIGUSR1)
    # Every thread's stack, the main thread's among them: the event loop's
    # (hub.py) once serving, the gateway's entry (main.py) while starting.
    output = gateway.wait_for_log("most recent call first")
    deadline = time.monotonic() + 10
    while "gevent/hub.py" not in output and "pushy/gateway/main.py" not in output:
        assert time.monotonic() < deadline, output
        time.sleep(0.02)  # a poll of the log (the dump may still be written)
        output = gateway.output()
    assert client.request(action="ping") == {"type": "pong"}
    assert gateway.get("/health")[0] == 200
    client.close()


def test_unknown_path_is_404(shared_gateway):
    assert shared_gateway.get("/nothing")[0] == 404


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_closes_clients_with_1001_and_exits(pushy_redis, signum):
    gw = Gateway(pushy_redis.url).start()
    try:
        clients = [RawClient("127.0.0.1", gw.port) for _ in range(3)]
        for client in clients:
            client.upgrade()
        started = time.monotonic()
        gw.signal(signum)
        for client in clients:
            assert client.recv_close() == (1001, "server shutting down")
        assert gw.wait(10) == 0
        assert time.monotonic() - started < 5
        gw.wait_for_log("pushy gateway stopped")
        with pytest.raises(OSError):
            RawClient("127.0.0.1", gw.port, timeout=1).upgrade()
    finally:
        gw.stop()


def test_shutdown_is_bounded_when_clients_never_answer(pushy_redis):
    gw = Gateway(pushy_redis.url, pushy_settings={"SHUTDOWN_TIMEOUT": 1}).start()
    try:
        silent = [RawClient("127.0.0.1", gw.port, rcvbuf=4096) for _ in range(3)]
        for client in silent:
            client.upgrade()
        started = time.monotonic()
        gw.signal(signal.SIGTERM)
        assert gw.wait(10) == 0
        assert time.monotonic() - started < 4
    finally:
        gw.stop()
