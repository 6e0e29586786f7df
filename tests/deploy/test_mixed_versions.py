"""A gateway of this release delivers what a later release may publish:
docs/deployment.md, "Releases and rolling deploys".

During a rolling deploy, web processes of the new release publish while
gateways of the old one still run. An update body with a key this release does
not know must still reach subscribers (the key left out), and a body this
release cannot read must be dropped and counted, never end the gateway.
"""

from __future__ import annotations

import json

import pytest
import redis

from tests.gateway.clients import Client
from tests.support.gateway import Gateway

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

CHANNEL = "pushy_testapp.shot"
LATER = {
    "url": "/api/shot/7/",
    "event": "update",
    "model": "testapp.shot",
    "pk": 7,
    "collection": "/api/shot/",
    "data": {"title": "from a later release"},
    # Keys a later release might add.
    "origin": "web-3",
    "fields_changed": ["title"],
}


def test_an_update_with_keys_from_a_later_release_is_delivered(pushy_redis):
    publisher = redis.Redis.from_url(pushy_redis.url)
    with Gateway(pushy_redis.url) as gateway:
        client = Client(gateway.ws_url)
        try:
            client.subscribe("/api/shot/")
            # An event this release does not know: dropped and counted.
            later_event = {**LATER, "pk": 8, "url": "/api/shot/8/", "event": "move"}
            assert publisher.publish(CHANNEL, json.dumps(later_event)) == 1
            assert publisher.publish(CHANNEL, json.dumps(LATER)) == 1
            update = client.recv()
            known = {
                k: v for k, v in LATER.items() if k not in ("origin", "fields_changed")
            }
            assert update == {"type": "update", **known}
            stats = gateway.get_json("/stats")
            assert stats["updates_invalid"] == 1, stats
        finally:
            client.close()
            publisher.close()
    gateway.wait_for_log("dropped an invalid message on pushy_testapp.shot")
