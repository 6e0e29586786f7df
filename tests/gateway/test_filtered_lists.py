"""A list URL with a query string (``/api/doc/?status=open``) hears of every
create, update and delete of its collection's members, each gated by the
member's own authorization, and is itself authorized as the whole URL."""

# The fixture of test_authorization (two users) is imported, and test
# arguments of the same name use it.
# ruff: noqa: F401, F811

from __future__ import annotations

import pytest

from pushy import publisher
from tests.gateway.clients import Client, login, publish
from tests.gateway.test_authorization import (
    doc_update,
    is_marker,
    next_update,
    people,
    publish_marker,
)
from tests.testapp.models import Document

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.django_db(transaction=True),
    pytest.mark.gateway_settings(DB_POOL_SIZE=2),  # the gateway fixture's
]

FILTERED = "/api/doc/?title=open"


def test_a_filtered_list_hears_its_members_each_as_its_owner_may(gateway, people):
    alice, bob = people
    alices = Document.objects.create(owner=alice, title="alice's")
    bobs = Document.objects.create(owner=bob, title="bob's")
    alice_client = Client(gateway.ws_url, cookie=login(alice)[1])
    try:
        answer = alice_client.request(action="subscribe", url=FILTERED)
        assert answer["type"] == "subscribed" and answer["url"] == FILTERED
        alice_client.subscribe("/api/shot/999/")
        for doc in (alices, bobs):
            publish(gateway.redis_url, doc_update(doc))
        n = publish_marker(gateway.redis_url)
        got = next_update(alice_client)
        # Told as a member of the list it holds; bob's document withheld.
        assert (got["url"], got["collection"]) == (alices.get_api_url(), FILTERED)
        assert is_marker(next_update(alice_client), n)
    finally:
        alice_client.close()


def test_a_filtered_list_is_authorized_as_the_whole_url(gateway):
    anonymous = Client(gateway.ws_url)
    try:
        # /api/doc/ needs a login, whatever its query string says.
        answer = anonymous.request(action="subscribe", url=FILTERED)
        assert (answer["type"], answer["code"]) == ("error", "forbidden")
    finally:
        anonymous.close()


def test_two_filters_and_the_plain_list_each_hear_once(gateway, people):
    alice, _ = people
    doc = Document.objects.create(owner=alice, title="a")
    client = Client(gateway.ws_url, cookie=login(alice)[1])
    lists = ["/api/doc/", FILTERED, "/api/doc/?title=closed"]
    try:
        for url in lists:
            client.subscribe(url)
        client.subscribe("/api/shot/999/")
        publish(gateway.redis_url, doc_update(doc))
        n = publish_marker(gateway.redis_url)
        heard = sorted(next_update(client)["collection"] for _ in lists)
        assert heard == sorted(lists)
        assert is_marker(next_update(client), n)
        # Unsubscribed, a filter hears nothing more; the others still do.
        client.request(action="unsubscribe", url=FILTERED)
        publish(gateway.redis_url, doc_update(doc))
        n = publish_marker(gateway.redis_url)
        heard = sorted(next_update(client)["collection"] for _ in lists[::2])
        assert heard == sorted(lists[::2])
        assert is_marker(next_update(client), n)
    finally:
        client.close()


def test_a_filtered_list_has_its_collections_version(gateway, people):
    alice, _ = people
    doc = Document.objects.create(owner=alice, title="a")
    first = Client(gateway.ws_url, cookie=login(alice)[1])
    held = first.request(action="subscribe", url=FILTERED, version=None)["version"]
    first.close()
    publisher.publish([doc_update(doc)])  # while the page was away
    again = Client(gateway.ws_url, cookie=login(alice)[1])
    try:
        answer = again.request(action="subscribe", url=FILTERED, version=held)
        assert answer["type"] == "subscribed"
        resync = again.recv()
        assert resync == {
            "type": "resync",
            "url": FILTERED,
            "version": answer["version"],
        }
    finally:
        again.close()
