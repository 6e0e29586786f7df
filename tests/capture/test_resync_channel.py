"""The gateway side of capture: a resync asked for on Redis reaches every client."""

from __future__ import annotations

import json

import pytest
import redis

from tests.gateway.clients import Client, publish, shot_update
from tests.support.gateway import gateway  # noqa: F401

pytestmark = pytest.mark.timeout(60)


def test_a_resync_request_reaches_every_client_and_is_not_an_update(
    gateway,  # noqa: F811
    pushy_redis,
):
    clients = [Client(gateway.ws_url) for _ in range(2)]
    clients[0].subscribe("/api/shot/1/")
    clients[1].subscribe("/api/shot/")
    before = gateway.get_json("stats")
    with redis.Redis.from_url(pushy_redis.url) as client:
        receivers = client.publish(
            "pushy_:resync", json.dumps({"models": ["testapp.shot"]})
        )
    assert receivers == 1
    for client in clients:
        assert client.recv() == {"type": "resync"}
    # Updates still flow, and the control message was not counted as invalid.
    publish(pushy_redis.url, shot_update(1))
    for client in clients:
        assert client.recv()["type"] == "update"
    after = gateway.get_json("stats")
    assert after["updates_invalid"] == before["updates_invalid"]
    assert after["updates_in"] == before["updates_in"] + 1
    for client in clients:
        client.close()
