"""The gateway notices a Redis that refuses writes, does not answer them, or
started a new version epoch under it, and acts (issue 20 items 1 and 3):
/health says 503 with the reason, and clients resync what they cannot be sure of.
Each test has a private Redis, since it changes that Redis' configuration."""

from __future__ import annotations

import time

import pytest
import redis

from pushy import versions
from tests.gateway.clients import Client
from tests.support.gateway import Gateway
from tests.support.servers import RedisServer

pytestmark = pytest.mark.timeout(60)

SHOT = "/api/shot/1/"
SETTINGS = {"REDIS_HEALTH_INTERVAL": 0.5}


@pytest.fixture
def private_redis():
    with RedisServer() as server:
        yield server


@pytest.fixture
def gateway_on(private_redis, settings):
    settings.PUSHY_SETTINGS = {
        **settings.PUSHY_SETTINGS,
        "REDIS_URL": private_redis.url,
    }
    with Gateway(private_redis.url, pushy_settings=SETTINGS) as gateway:
        gateway.wait_for_health(200, timeout=10)
        yield gateway


def health(gateway: Gateway) -> tuple[int, dict]:
    import json

    status, body = gateway.get("/health")
    return status, json.loads(body)


def wait_for_reason(gateway: Gateway, reason: str | None, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = health(gateway)
        if body.get("reason") == reason and (status == 200) == (reason is None):
            return
        time.sleep(0.05)
    raise AssertionError(f"/health never gave reason {reason!r}: {status} {body}")


def fill_until_oom(store: redis.Redis) -> int:
    """Set a small maxmemory with noeviction and fill it; the keys written."""
    store.config_set("maxmemory-policy", "noeviction")
    store.config_set("maxmemory", str(store.info("memory")["used_memory"] + 200_000))
    written = 0
    try:
        while True:
            store.set(f"filler:{written}", "x" * 10_000)
            written += 1
    except redis.exceptions.OutOfMemoryError:
        pass
    # Firmly over it: freed buffers must not let a small write through.
    store.config_set("maxmemory", str(store.info("memory")["used_memory"] - 100_000))
    return written


def test_an_out_of_memory_redis_is_reported_and_its_end_resyncs_returning_pages(
    gateway_on, private_redis
):
    store = redis.Redis.from_url(private_redis.url)
    away = Client(gateway_on.ws_url)
    held = away.request(action="subscribe", url=SHOT, version=None)["version"]
    away.close()

    written = fill_until_oom(store)
    wait_for_reason(gateway_on, "redis_out_of_memory")
    gateway_on.wait_for_log("Redis refuses writes (out of memory)")

    store.delete(*[f"filler:{i}" for i in range(written)])
    store.config_set("maxmemory", "0")
    wait_for_reason(gateway_on, None)
    # Versions may have stood still meanwhile (a publisher that died could not
    # move them later): a page that was away resyncs, whatever it holds.
    back = Client(gateway_on.ws_url)
    answer = back.request(action="subscribe", url=SHOT, version=held)
    assert answer["version"] > held
    assert back.recv() == {"type": "resync", "url": SHOT, "version": answer["version"]}
    back.close()
    store.close()


def test_a_redis_that_pauses_writes_is_reported_while_it_lasts(
    gateway_on, private_redis
):
    store = redis.Redis.from_url(private_redis.url)
    store.execute_command("CLIENT", "PAUSE", "4000", "WRITE")
    started = time.monotonic()
    wait_for_reason(gateway_on, "redis_not_answering", timeout=4)
    assert time.monotonic() - started < 4  # noticed while the pause lasts
    wait_for_reason(gateway_on, None, timeout=10)
    store.close()


def test_a_new_epoch_found_by_the_probe_resyncs_connected_clients(
    gateway_on, private_redis
):
    versioned = Client(gateway_on.ws_url)
    versioned.request(action="subscribe", url=SHOT, version=None)
    plain = Client(gateway_on.ws_url)
    plain.subscribe(SHOT)
    # The book now says another Redis process counted it (as after a restart
    # that loaded a snapshot, with the subscription somehow kept).
    store = redis.Redis.from_url(private_redis.url)
    book = versions.book_key()
    [member] = store.zrangebyscore(book, -1, -1)
    floor = member.decode().rsplit(":", 1)[1]
    store.zremrangebyscore(book, -1, -1)
    store.zadd(book, {f":epoch:{'e' * 40}:{floor}": -1})

    resync = versioned.recv_until(lambda m: m["type"] == "resync", timeout=10)
    assert resync["url"] == SHOT
    assert plain.recv_until(lambda m: m["type"] == "resync", timeout=10) == {
        "type": "resync"
    }
    gateway_on.wait_for_log("new version epoch")
    versioned.close()
    plain.close()
    store.close()


def test_a_resync_request_with_its_epoch_resyncs_connected_clients_once(
    gateway_on, private_redis
):
    from pushy.channels import resync_channel

    versioned = Client(gateway_on.ws_url)
    versioned.request(action="subscribe", url=SHOT, version=None)
    store = redis.Redis.from_url(private_redis.url)
    floor = store.eval(
        versions.LOSE_SCRIPT,
        1,
        versions.book_key(),
        "",
        resync_channel(),
        '{"models": [], "reason": "test"}',
    )
    assert versioned.recv() == {"type": "resync"}
    # The gateway's probes (every 0.5 s here) see the floor the request moved,
    # and do not resync the same clients again.
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        assert versioned.request(action="ping") == {"type": "pong"}
        time.sleep(0.2)
    # A page that comes back with a version from before is resynced.
    back = Client(gateway_on.ws_url)
    answer = back.request(action="subscribe", url=SHOT, version=int(floor) - 1)
    assert back.recv() == {"type": "resync", "url": SHOT, "version": answer["version"]}
    versioned.close()
    back.close()
    store.close()


def test_an_outage_resync_compares_with_the_horizon_from_before_the_outage(
    gateway_on, private_redis
):
    """Updates that arrive right after the subscription is back must not move
    the horizon the outage's resync compares with (a change made while the
    gateway was unsubscribed would then look old)."""
    import threading

    from pushy import publisher
    from tests.gateway.clients import shot_update

    client = Client(gateway_on.ws_url)
    client.request(action="subscribe", url=SHOT, version=None)
    store = redis.Redis.from_url(private_redis.url)
    flooding = threading.Event()

    def flood():
        # Other objects' updates, queued behind the resubscription.
        pk = 1000
        while not flooding.is_set():
            publisher.publish([shot_update(pk)])
            pk += 1

    store.client_kill_filter(_type="pubsub")
    publisher.publish([shot_update(1)])  # while the gateway is not subscribed
    flooder = threading.Thread(target=flood)
    flooder.start()
    try:
        resync = client.recv_until(lambda m: m["type"] == "resync", timeout=10)
    finally:
        flooding.set()
        flooder.join()
    assert resync["url"] == SHOT
    client.close()
    store.close()
