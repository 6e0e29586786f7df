"""Delivery lag as an SLO: per update, the time from its commit's publish to
this gateway and to its subscribers' sockets, as Prometheus histograms; shown
by pushy_explain, and charted by docs/grafana-dashboard.json."""

from __future__ import annotations

import json
import re
import time

import pytest
import redis

from pushy import publisher
from pushy.messages import Update
from tests.conftest import ROOT
from tests.gateway.clients import Client, shot_update

pytestmark = pytest.mark.timeout(60)


def metrics(gateway) -> str:
    status, body = gateway.get("/metrics")
    assert status == 200, body
    return body


def sample(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def wait_for_count(gateway, name: str, count: int) -> str:
    deadline = time.monotonic() + 10
    while True:
        text = metrics(gateway)
        if sample(text, f"{name}_count") >= count:
            return text
        assert time.monotonic() < deadline, text
        time.sleep(0.02)


def test_each_update_is_timed_from_its_commit_to_the_socket(gateway):
    client = Client(gateway.ws_url)
    try:
        client.subscribe("/api/shot/1/")
        publisher.publish([shot_update(1)])
        message = client.recv()
        assert message["type"] == "update"
        assert "published" not in message  # for gateways only
        text = wait_for_count(gateway, "pushy_gateway_update_delivery_seconds", 1)
        assert sample(text, "pushy_gateway_update_arrival_seconds_count") == 1
        # Here, on one machine: well within a second.
        bucket = 'pushy_gateway_update_delivery_seconds_bucket{le="1"}'
        assert sample(text, bucket) == 1
    finally:
        client.close()


def test_a_late_update_lands_in_its_bucket(gateway):
    """Published 2 s ago by its sender's clock (queued while Redis was away)."""
    client = Client(gateway.ws_url)
    try:
        client.subscribe("/api/shot/2/")
        late = Update(
            url="/api/shot/2/", event="update", model="testapp.shot", pk=2,
            published=round(time.time() - 2, 3),
        )  # fmt: skip
        redis.Redis.from_url(gateway.redis_url).publish(late.channel, late.encode())
        assert client.recv()["pk"] == 2
        text = wait_for_count(gateway, "pushy_gateway_update_delivery_seconds", 1)
        name = "pushy_gateway_update_delivery_seconds_bucket"
        assert sample(text, f'{name}{{le="1"}}') == 0
        assert sample(text, f'{name}{{le="2.5"}}') == 1
    finally:
        client.close()


def test_the_dashboards_queries_use_metrics_the_gateway_exports(gateway):
    exported = set()
    for line in metrics(gateway).splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            exported.add(name)
            if kind == "histogram":
                exported |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {name for expr in exprs for name in re.findall(r"pushy_\w+", expr)}
    assert used and used <= exported, used - exported
    assert "pushy_gateway_update_delivery_seconds_bucket" in used
