"""Protocol v1 against a real runpushy: acks, pings, errors, delivery."""

import pytest

from pushy.messages import Update
from tests.gateway.clients import Client, publish, shot_update

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def client(shared_gateway):
    c = Client(shared_gateway.ws_url)
    yield c
    c.close()


def test_subscribe_unsubscribe_and_ping_are_acknowledged(client):
    assert client.request(action="subscribe", url="/api/shot/1/") == {
        "type": "subscribed",
        "url": "/api/shot/1/",
    }
    assert client.request(action="ping") == {"type": "pong"}
    assert client.request(action="unsubscribe", url="/api/shot/1/") == {
        "type": "unsubscribed",
        "url": "/api/shot/1/",
    }


def test_update_reaches_object_and_collection_subscribers(shared_gateway, client):
    other = Client(shared_gateway.ws_url)
    try:
        client.subscribe("/api/shot/7/")
        other.subscribe("/api/shot/")
        update = shot_update(7, title="seven")
        assert publish(shared_gateway.redis_url, update) == 1
        expected = update.as_message()
        assert client.recv() == expected
        assert other.recv() == expected
    finally:
        other.close()


def test_subscriber_of_object_and_collection_gets_one_copy(shared_gateway, client):
    client.subscribe("/api/shot/8/")
    client.subscribe("/api/shot/")
    publish(shared_gateway.redis_url, shot_update(8))
    publish(shared_gateway.redis_url, shot_update(9))
    # The second update only matches the collection: the first came once.
    assert client.recv()["pk"] == 8
    assert client.recv()["pk"] == 9


def test_unsubscribed_client_gets_nothing_more(shared_gateway, client):
    client.subscribe("/api/shot/3/")
    client.request(action="unsubscribe", url="/api/shot/3/")
    publish(shared_gateway.redis_url, shot_update(3))
    # The pong proves the update was not queued before it.
    assert client.request(action="ping") == {"type": "pong"}


def test_update_without_collection_and_with_string_pk(shared_gateway, client):
    client.subscribe("/api/note/a-b/")
    update = Update(
        url="/api/note/a-b/", event="delete", model="testapp.note", pk="a-b"
    )
    publish(shared_gateway.redis_url, update)
    assert client.recv() == {
        "type": "update",
        "url": "/api/note/a-b/",
        "event": "delete",
        "model": "testapp.note",
        "pk": "a-b",
    }


@pytest.mark.parametrize(
    "raw, url",
    [
        ("not json", None),
        ("[1, 2]", None),
        ('{"action": "dance"}', None),
        ('{"action": "subscribe"}', None),
        ('{"action": "subscribe", "url": 5}', None),
        ('{"action": "subscribe", "url": ""}', ""),
        ('{"action": "unsubscribe", "url": "/a\\n/"}', "/a\n/"),
        ('{"action": "subscribe", "url": "/\\ud800/"}', "/\ud800/"),
        ("[" * 30000 + "]" * 30000, None),
        ('{"action": "ping", "x": ' + "[" * 30000 + "]" * 30000 + "}", None),
    ],
)
def test_malformed_requests_get_invalid_and_connection_stays_usable(client, raw, url):
    client.ws.send(raw)
    answer = client.recv()
    assert answer["type"] == "error"
    assert answer["code"] == "invalid"
    assert answer["message"]
    assert answer.get("url") == url
    assert client.request(action="ping") == {"type": "pong"}


def test_invalid_redis_messages_are_ignored_and_counted(shared_gateway, client):
    import redis

    before = shared_gateway.get_json("/stats")["updates_invalid"]
    client.subscribe("/api/shot/4/")
    r = redis.Redis.from_url(shared_gateway.redis_url)
    r.publish("pushy_testapp.shot", b"\xff not json")
    r.publish("pushy_testapp.shot", b'{"url": "/api/shot/4/"}')
    r.close()
    publish(shared_gateway.redis_url, shot_update(4))
    assert client.recv()["pk"] == 4
    assert shared_gateway.get_json("/stats")["updates_invalid"] == before + 2
