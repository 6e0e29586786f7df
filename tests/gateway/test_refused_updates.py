"""An update refused at publish still reaches its subscribers through a real
gateway, without its data, and the site-wide count of refusals shows in every
gateway's /metrics (issue 20 item 4)."""

from __future__ import annotations

import time

import pytest

from pushy import sending
from tests.gateway.clients import Client
from tests.support.gateway import Gateway
from tests.testapp.models import Shot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(30)]


def test_an_oversized_save_reaches_subscribers_without_data_and_is_counted(
    pushy_redis, settings
):
    settings.PUSHY_SETTINGS = {**settings.PUSHY_SETTINGS, "MAX_UPDATE_BYTES": 500}
    gateway_settings = {"REDIS_HEALTH_INTERVAL": 0.5}
    with Gateway(pushy_redis.url, pushy_settings=gateway_settings) as gateway:
        client = Client(gateway.ws_url)
        client.subscribe("/api/shot/")
        shot = Shot.objects.create(title="x" * 600)
        update = client.recv()
        assert (update["type"], update["pk"], update["event"]) == (
            "update",
            shot.pk,
            "create",
        )
        assert "data" not in update
        assert sending.get().flush(5)
        line = 'pushy_site_updates_refused_total{reason="too_large"} 1'
        deadline = time.monotonic() + 5
        while line not in gateway.get("/metrics")[1]:
            assert time.monotonic() < deadline, gateway.get("/metrics")[1]
            time.sleep(0.1)
        assert gateway.get_json("/stats")["site_updates_refused"]["too_large"] == 1
        client.close()
