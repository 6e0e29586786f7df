"""manage.py pushy_explain against real gateways (runpushy subprocesses), real
WebSocket clients and the private Redis."""

from __future__ import annotations

import io
import json

import pytest
import redis
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from pushy.channels import explain_channel
from tests.gateway.clients import Client
from tests.support.gateway import Gateway
from tests.testapp.models import Document, Shot, Unpushed

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]

OPEN = {"AUTHORIZE": "pushy.authorization.allow_all"}


def explain(*args: str) -> list[str]:
    out = io.StringIO()
    call_command("pushy_explain", *args, stdout=out)
    return out.getvalue().splitlines()


@pytest.fixture
def two_gateways(redis_server):
    with (
        Gateway(redis_server.url, pushy_settings=OPEN) as first,
        Gateway(redis_server.url, pushy_settings=OPEN) as second,
    ):
        yield first, second


def test_counts_the_subscribers_of_the_url_and_collection_on_each_gateway(
    two_gateways,
):
    shot = Shot.objects.create(title="Dunes")
    url = f"/api/shot/{shot.pk}/"
    first, second = two_gateways
    clients = [Client(first.ws_url) for _ in range(3)] + [Client(second.ws_url)]
    try:
        clients[0].subscribe(url)
        clients[1].subscribe(url)
        clients[1].subscribe("/api/shot/")
        clients[3].subscribe("/api/shot/")
        clients[3].subscribe("/api/shot/999/")
        lines = explain("testapp.shot", str(shot.pk))
    finally:
        for client in clients:
            client.close()
    body = (
        f'{{"url":"{url}","event":"update","model":"testapp.shot","pk":{shot.pk},'
        '"collection":"/api/shot/","data":{"title":"Dunes"}}'
    )
    assert lines[:5] == [
        "A save publishes:",
        "  channel: pushy_testapp.shot",
        f"  body: {body}",
        f"  size: {len(body)} bytes (MAX_UPDATE_BYTES 1,048,576)",
        "Gateway processes listening on Redis: 2",
    ]
    gateway_lines = [line for line in lines[5:9] if "connections;" in line]
    per_gateway = sorted(gateway_lines, key=lambda line: "3 connections" not in line)
    assert per_gateway[0].endswith(
        f": 3 connections; subscribed to {url}: 2, /api/shot/: 1"
    )
    assert per_gateway[1].endswith(
        f": 1 connections; subscribed to {url}: 0, /api/shot/: 1"
    )
    pids = {str(first.pid), str(second.pid)}
    assert {line.split(":")[1] for line in per_gateway} == pids
    # Under each, how fast its updates went out (none yet here).
    assert (
        lines[6]
        == lines[8]
        == ("    no update delivered since it started (or an older pushy)")
    )
    assert lines[9:] == [f"  connections subscribed in all: {url}: 2, /api/shot/: 2"]


def test_says_when_no_gateway_listens():
    shot = Shot.objects.create(title="x")
    lines = explain("testapp.shot", str(shot.pk))
    assert lines[4] == "Gateway processes listening on Redis: 0"
    assert "start manage.py runpushy" in lines[5]
    assert len(lines) == 6


def test_a_gateway_ignores_a_malformed_question_and_writes_no_foreign_key(
    two_gateways, redis_server
):
    client = redis.Redis.from_url(redis_server.url)
    try:
        for body in (b"not json", b"[]", json.dumps({"urls": [], "reply": "mine"})):
            assert client.publish(explain_channel(), body) == 2
        shot = Shot.objects.create(title="y")
        lines = explain("testapp.shot", str(shot.pk))
        assert client.exists("mine") == 0
    finally:
        client.close()
    assert lines[4] == "Gateway processes listening on Redis: 2"
    assert "connections subscribed in all" in lines[-1]
    for gateway in two_gateways:
        gateway.wait_for_log("ignored an explain request")
        assert gateway.get_json("/stats")["updates_invalid"] == 0


@pytest.fixture
def documents(settings):
    settings.PUSHY_SETTINGS = {
        **settings.PUSHY_SETTINGS,
        "MODELS": [*settings.PUSHY_SETTINGS["MODELS"], "testapp.document"],
    }
    alice = User.objects.create_user("alice")
    User.objects.create_user("bob")
    return Document.objects.create(owner=alice, title="Alice's")


def test_user_answers_as_the_view_does(documents):
    doc = documents.pk
    alice = explain("testapp.document", str(doc), "--user", "alice")
    start = alice.index("User 'alice':")
    assert alice[start + 1].startswith(f"  subscribe to /api/doc/{doc}/: allowed; ")
    assert alice[start + 1].endswith(
        f"GET /api/doc/{doc}/ (tests.testapp.views.DocumentDetail) answered 200"
    )
    assert "pushy.authorization.can_get (the default)" in alice[start + 1]
    assert alice[start + 2].startswith("  subscribe to /api/doc/: allowed; ")
    assert "receives this object's updates" in alice[start + 3]
    bob = explain("testapp.document", str(doc), "--user", "bob")
    start = bob.index("User 'bob':")
    assert bob[start + 1].startswith(f"  subscribe to /api/doc/{doc}/: refused")
    assert bob[start + 1].endswith("answered 403")
    assert bob[start + 2].startswith("  subscribe to /api/doc/: allowed; ")
    assert "does not receive this object's updates" in bob[start + 3]


def test_user_with_a_custom_authorize(documents, settings):
    settings.PUSHY_SETTINGS = {**settings.PUSHY_SETTINGS, **OPEN}
    lines = explain("testapp.document", str(documents.pk), "--user", "bob")
    assert any(
        "allowed; pushy.authorization.allow_all returned True" in line for line in lines
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("testapp.nothing", "1"), "unknown model 'testapp.nothing'"),
        (("testapp.shot", "999999"), "testapp.shot has no object with pk '999999'"),
        (("testapp.shot", "abc"), "'abc' is not a valid pk for testapp.shot"),
    ],
)
def test_failures_are_one_clear_line(args, message):
    with pytest.raises(CommandError, match=message):
        explain(*args)


def test_a_model_not_configured():
    obj = Unpushed.objects.create(name="x")
    with pytest.raises(CommandError, match="testapp.unpushed is not in PUSHY_SETTINGS"):
        explain("testapp.unpushed", str(obj.pk))


def test_an_unknown_user():
    shot = Shot.objects.create(title="x")
    with pytest.raises(CommandError, match="no user 'carol'"):
        explain("testapp.shot", str(shot.pk), "--user", "carol")


def test_redis_unreachable(settings):
    shot = Shot.objects.create(title="x")
    settings.PUSHY_SETTINGS = {
        **settings.PUSHY_SETTINGS,
        "REDIS_URL": "redis://127.0.0.1:1/0",
    }
    out = io.StringIO()
    with pytest.raises(CommandError, match="Redis could not be reached"):
        call_command("pushy_explain", "testapp.shot", str(shot.pk), stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[4].startswith("Gateway processes listening on Redis: unknown (")
    assert "127.0.0.1:1" in lines[4]


def test_delivery_lag_in_words():
    from pushy.explain import lag_bound

    histogram = {
        "count": 100,
        "buckets": {"0.001": 10, "0.005": 60, "0.1": 99, "30": 100, "+Inf": 100},
    }
    assert lag_bound(histogram, 0.5) == "5 ms"
    assert lag_bound(histogram, 0.99) == "100 ms"
    assert lag_bound(histogram, 1.0) == "30 s"
    assert lag_bound({"count": 0, "buckets": {}}, 0.5) is None
