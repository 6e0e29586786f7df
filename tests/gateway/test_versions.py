"""Versions (issue 13): given at publish in Redis, compared by a real gateway when
a client subscribes with the version it last saw, and after a Redis outage."""

from __future__ import annotations

import pytest
import redis

from pushy import publisher, versions
from tests.gateway.clients import Client, shot_update
from tests.support.gateway import Gateway
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.timeout(60)

SHOT = "/api/shot/1/"


def subscribe(client: Client, url: str, version) -> dict:
    answer = client.request(action="subscribe", url=url, version=version)
    assert answer["type"] == "subscribed" and answer["url"] == url, answer
    assert isinstance(answer["version"], int), answer
    return answer


def next_is_pong(client: Client) -> dict:
    """The next message after a ping; a pong means nothing else was queued."""
    return client.request(action="ping")


def test_updates_carry_growing_versions_and_the_baseline_is_not_behind(gateway):
    client = Client(gateway.ws_url)
    baseline = subscribe(client, "/api/shot/", None)["version"]
    publisher.publish([shot_update(1), shot_update(2), shot_update(1)])
    seen = [client.recv()["version"] for _ in range(3)]
    assert baseline < seen[0] < seen[1] < seen[2]
    # The object's and its collection's versions are the last change's.
    store = redis.Redis.from_url(gateway.redis_url)
    book = versions.book_key()
    assert store.zscore(book, versions.url_member(SHOT)) == seen[2]
    assert store.zscore(book, versions.url_member("/api/shot/")) == seen[2]
    # The book has no expiry: a volatile-* eviction policy never takes it.
    assert store.ttl(book) == -1
    client.close()


@pytest.mark.gateway_settings(
    HISTORY_LENGTH=0
)  # no replay: tests/gateway/test_replay.py
def test_a_resubscribe_is_answered_per_url_changed_or_not(gateway):
    first = Client(gateway.ws_url)
    held = {
        url: subscribe(first, url, None)["version"] for url in (SHOT, "/api/shot/2/")
    }
    first.close()  # gone, as a page in a tunnel
    publisher.publish([shot_update(1)])

    again = Client(gateway.ws_url)
    answer = subscribe(again, SHOT, held[SHOT])
    assert again.recv() == {"type": "resync", "url": SHOT, "version": answer["version"]}
    subscribe(again, "/api/shot/2/", held["/api/shot/2/"])  # unchanged: nothing follows
    assert next_is_pong(again) == {"type": "pong"}
    # With the version the answer gave, the changed URL is now quiet too.
    subscribe(again, SHOT, answer["version"])
    assert next_is_pong(again) == {"type": "pong"}
    again.close()


def test_lost_or_expired_versions_fall_back_to_a_resync_of_that_url(gateway):
    client = Client(gateway.ws_url)
    held = subscribe(client, SHOT, None)["version"]
    # Older than VERSION_TTL (a day), with no version stored: may have expired.
    old = held - 86400 * 1_000_000 - 1
    subscribe(client, SHOT, old)
    assert client.recv()["type"] == "resync"
    # Redis restarted empty: every version a client holds is older than the floor.
    redis.Redis.from_url(gateway.redis_url).flushall()
    answer = subscribe(client, SHOT, held)
    assert answer["version"] > held
    assert client.recv() == {
        "type": "resync",
        "url": SHOT,
        "version": answer["version"],
    }
    client.close()


def test_protocol_v1_subscribes_are_answered_as_before(gateway):
    client = Client(gateway.ws_url)
    assert client.request(action="subscribe", url=SHOT) == {
        "type": "subscribed",
        "url": SHOT,
    }
    publisher.publish([shot_update(1)])
    update = client.recv()
    assert update["type"] == "update" and isinstance(update["version"], int)
    client.close()


@pytest.mark.parametrize("version", ["12", -1, 1.5, True, {}])
def test_a_bad_version_is_invalid_and_subscribes_nothing(gateway, version):
    client = Client(gateway.ws_url)
    answer = client.request(action="subscribe", url=SHOT, version=version)
    assert answer["type"] == "error" and answer["code"] == "invalid", answer
    assert "version" in answer["message"]
    assert gateway.get_json("/stats")["subscriptions"] == 0
    client.close()


def test_a_publish_after_redis_lost_its_scripts_still_goes_out(gateway):
    client = Client(gateway.ws_url)
    client.subscribe(SHOT)
    redis.Redis.from_url(gateway.redis_url).script_flush()
    assert publisher.publish([shot_update(1)]) == [1]
    assert client.recv()["pk"] == 1
    client.close()


@pytest.mark.slow
def test_after_a_redis_outage_only_changed_urls_are_resynced(redis_server):
    settings = {"REDIS_HEALTH_INTERVAL": 1}
    with (
        TcpProxy(redis_server.port) as proxy,
        Gateway(proxy.redis_url(), pushy_settings=settings) as gw,
    ):
        versioned, plain = Client(gw.ws_url, timeout=20), Client(gw.ws_url, timeout=20)
        for url in (SHOT, "/api/shot/2/", "/api/session/1/"):
            subscribe(versioned, url, None)
        plain.subscribe(SHOT)
        publisher.publish([shot_update(1)])  # the gateway's horizon moves on
        assert plain.recv()["type"] == versioned.recv()["type"] == "update"

        proxy.blackhole()
        gw.wait_for_log("no answer to PING")
        publisher.publish([shot_update(2)])  # lost on the way to the gateway
        proxy.heal()

        resync = versioned.recv()
        assert resync["type"] == "resync" and resync["url"] == "/api/shot/2/"
        assert next_is_pong(versioned) == {"type": "pong"}, "only that URL"
        assert plain.recv() == {"type": "resync"}  # a v1 client: everything
        versioned.close()
        plain.close()
