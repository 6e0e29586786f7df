"""A subscriber saying its URL is one object (``"object": true``,
docs/protocol.md) on the private 3 + 3 cluster: the gateway holds that
object's shard channel alone for it, 13 (the 12 of the list it may be, too)
while an unhinted subscriber of the same URL is there, and 1 again once that
one left (past the grace). Redis's own PUBSUB SHARDNUMSUB on the masters says
what the gateway holds."""

from __future__ import annotations

import pytest

from pushy import redis_cluster as mode
from tests import test_cluster_interest as helpers
from tests import test_cluster_mode
from tests.gateway.clients import Client

pushy_cluster = test_cluster_mode.pushy_cluster
cluster_gateway = test_cluster_mode.cluster_gateway
numsub, publish, wait_for = helpers.numsub, helpers.publish, helpers.wait_for

pytestmark = [pytest.mark.timeout(120), pytest.mark.django_db(transaction=True)]


def held(cluster, url: str) -> list[str]:
    """The channels of ``url`` (either kind) the gateway holds on the masters."""
    every = mode.interest(url)
    return [c for c, n in numsub(cluster, every).items() if n > 0]


def test_a_hinted_object_costs_one_channel_an_unhinted_one_thirteen(
    cluster_gateway, redis_cluster
):
    url = helpers.urls(700, 1)[0]
    hinted, plain = Client(cluster_gateway.ws_url), Client(cluster_gateway.ws_url)
    try:
        answer = hinted.request(action="subscribe", url=url, object=True)
        assert answer == {"type": "subscribed", "url": url}
        assert held(redis_cluster, url) == [mode.object_channel(url)]
        plain.subscribe(url)
        assert len(held(redis_cluster, url)) == 13
        assert publish([url]) == [1]  # one gateway, one copy of the channel
        assert hinted.recv()["url"] == url and plain.recv()["url"] == url
        plain.request(action="unsubscribe", url=url)
        # The lists' channels go once the grace is past; the object's stays.
        wait_for(lambda: held(redis_cluster, url) == [mode.object_channel(url)])
        assert publish([url]) == [1]
        assert hinted.recv()["url"] == url
    finally:
        hinted.close()
        plain.close()
    wait_for(lambda: held(redis_cluster, url) == [])


def test_a_hinted_subscription_widens_when_subscribed_again_without(
    cluster_gateway, redis_cluster
):
    url = helpers.urls(710, 1)[0]
    page = Client(cluster_gateway.ws_url)
    try:
        page.request(action="subscribe", url=url, object=True)
        assert len(held(redis_cluster, url)) == 1
        # Answered once the 12 more are held.
        assert page.request(action="subscribe", url=url)["type"] == "subscribed"
        assert len(held(redis_cluster, url)) == 13
    finally:
        page.close()


def test_a_list_said_to_be_an_object_hears_no_member(cluster_gateway, redis_cluster):
    """A list wrongly said to be an object hears no member update (when this
    gateway does not receive it for another subscriber): that page alone
    misses them."""
    member, followed = helpers.urls(720, 2)
    wrong, right = Client(cluster_gateway.ws_url), Client(cluster_gateway.ws_url)
    try:
        wrong.request(action="subscribe", url="/api/shot/", object=True)
        right.request(action="subscribe", url=followed, object=True)
        # The member's update reaches no gateway; the followed one's, this one.
        assert publish([member, followed]) == [0, 1]
        assert right.recv()["url"] == followed
        # The followed object's update was dispatched here: the list hears it.
        assert wrong.recv()["url"] == followed
        assert wrong.request(action="ping") == {"type": "pong"}  # nothing more
    finally:
        wrong.close()
        right.close()


def test_versions_work_for_a_hinted_object(cluster_gateway, redis_cluster):
    url = helpers.urls(730, 1)[0]
    page = Client(cluster_gateway.ws_url)
    try:
        first = page.request(action="subscribe", url=url, version=None, object=True)
        assert first["type"] == "subscribed" and isinstance(first["version"], int)
        publish([url])
        update = page.recv()
        assert update["url"] == url and update["version"] > first["version"]
        # Back with an older version: given what it missed (the history's
        # replay) or told to resync; with the newest: neither.
        page.request(action="unsubscribe", url=url)
        page.send(action="subscribe", url=url, version=first["version"], object=True)
        heard = {m["type"]: m for m in (page.recv(), page.recv())}
        assert "subscribed" in heard and heard.keys() & {"update", "resync"}, heard
        missed = heard.get("update") or heard["resync"]
        newest = missed["version"]
        assert missed["url"] == url and newest >= update["version"]
        page.request(action="unsubscribe", url=url)
        again = page.request(action="subscribe", url=url, version=newest, object=True)
        assert again["type"] == "subscribed"
        assert page.request(action="ping") == {"type": "pong"}
    finally:
        page.close()


def test_a_hint_on_a_filtered_list_is_refused(cluster_gateway, redis_cluster):
    url = "/api/shot/?status=open"
    page = Client(cluster_gateway.ws_url)
    try:
        answer = page.request(action="subscribe", url=url, object=True)
        assert answer["type"] == "error" and answer["code"] == "invalid"
        assert answer["url"] == url and "query string" in answer["message"]
        assert held(redis_cluster, url) == []  # nothing subscribed
        page.subscribe(url)  # without the hint: the list's 12
        assert len(held(redis_cluster, url)) == 12
    finally:
        page.close()
