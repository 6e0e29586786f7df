"""Nothing on Redis silences the gateway: invalid messages, failures, a crash."""

import pytest
import redis
from django.conf import settings

from tests.gateway.clients import Client, publish, shot_update
from tests.gateway.faults import CRASH_URL, FAIL_URL
from tests.gateway.poison import MAX_UPDATE_BYTES, POISON, URL
from tests.support.gateway import Gateway

pytestmark = [pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def faulty_gateway(redis_server):
    apps = [*settings.INSTALLED_APPS, "tests.gateway.faults"]
    with Gateway(
        redis_server.url,
        pushy_settings={"MAX_UPDATE_BYTES": MAX_UPDATE_BYTES},
        settings={"INSTALLED_APPS": apps},
    ) as gw:
        yield gw


@pytest.fixture
def client(faulty_gateway):
    c = Client(faulty_gateway.ws_url, timeout=10)
    c.subscribe(URL)
    c.subscribe("/api/shot/")
    yield c
    c.close()


def assert_next_is_pong(client):
    """Nothing else (no resync, no forwarded poison) is waiting before the pong."""
    assert client.request(action="ping") == {"type": "pong"}


def test_invalid_messages_are_dropped_counted_and_logged_once(faulty_gateway, client):
    gw = faulty_gateway
    before = gw.get_json("/stats")
    r = redis.Redis.from_url(gw.redis_url)
    try:
        for n, poison in enumerate(POISON):
            publish(gw.redis_url, shot_update(100 + n))
            assert r.publish("pushy_testapp.shot", poison) == 1
            assert r.publish("pushy_other.model", poison) == 1
        publish(gw.redis_url, shot_update(999))
    finally:
        r.close()
    pks = [client.recv()["pk"] for _ in range(len(POISON) + 1)]
    assert pks == [100 + n for n in range(len(POISON))] + [999]
    assert_next_is_pong(client)

    after = gw.get_json("/stats")
    assert after["updates_invalid"] - before["updates_invalid"] == 2 * len(POISON)
    assert after["updates_in"] - before["updates_in"] == len(POISON) + 1
    assert after["redis_reconnects"] == before["redis_reconnects"]
    assert after["listener_restarts"] == before["listener_restarts"]
    assert gw.get("/health")[0] == 200
    metrics = gw.get("/metrics")[1]
    assert f"pushy_gateway_updates_invalid_total {after['updates_invalid']}" in metrics
    # Logged with the channel and the reason, then quiet for a minute.
    log = gw.wait_for_log("dropped an invalid message on pushy_testapp.shot: ")
    assert log.count("dropped an invalid message") == 1


def test_an_error_while_dispatching_skips_only_that_update(faulty_gateway, client):
    gw = faulty_gateway
    before = gw.get_json("/stats")
    publish(gw.redis_url, shot_update(1))
    publish(gw.redis_url, shot_update(2).replace(url=FAIL_URL))
    publish(gw.redis_url, shot_update(3))
    assert [client.recv()["pk"] for _ in range(2)] == [1, 3]
    assert_next_is_pong(client)
    after = gw.get_json("/stats")
    assert after["updates_failed"] == before["updates_failed"] + 1
    assert after["redis_reconnects"] == before["redis_reconnects"]
    log = gw.wait_for_log(f"skipped an update of {FAIL_URL} on pushy_testapp.shot")
    assert "Traceback" in log and "RuntimeError: injected dispatch failure" in log


def test_a_crashed_listener_is_restarted_and_clients_resync(faulty_gateway, client):
    gw = faulty_gateway
    before = gw.get_json("/stats")
    publish(gw.redis_url, shot_update(1))
    publish(gw.redis_url, shot_update(2).replace(url=CRASH_URL))
    assert client.recv()["pk"] == 1
    assert client.recv() == {"type": "resync"}
    publish(gw.redis_url, shot_update(3))
    assert client.recv()["pk"] == 3
    after = gw.get_json("/stats")
    assert after["listener_restarts"] == before["listener_restarts"] + 1
    assert after["redis_reconnects"] == before["redis_reconnects"] + 1
    assert gw.get("/health")[0] == 200
    gw.wait_for_log("the Redis listener ended with Crash('injected listener crash')")
