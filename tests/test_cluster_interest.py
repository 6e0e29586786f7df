"""Interest-based subscription on Redis Cluster (issue 24, item 3), on the
private 3 + 3 cluster: a gateway holds only the shard channels of the URLs its
clients follow, in batches, and answers a subscribe once they are held.

The sender's receiver counts (``Sender.publish``) are Redis's own word on how
many subscriptions a publish reached; ``/stats``' ``updates_in`` counts what a
gateway received (a copy arriving on both channels of an update counts once).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest
import redis

from pushy import redis_cluster as mode
from pushy import sending
from tests import test_cluster_mode
from tests.gateway.clients import Client, shot_update
from tests.support.gateway import Gateway

OPEN = test_cluster_mode.OPEN
# The fixtures of the cluster's end-to-end tests.
pushy_cluster = test_cluster_mode.pushy_cluster
cluster_gateway = test_cluster_mode.cluster_gateway

pytestmark = [pytest.mark.timeout(120), pytest.mark.django_db(transaction=True)]

# pks far from those the suite's saves use.
BASE = 900_000


def urls(first: int, count: int) -> list[str]:
    return [f"/api/shot/{pk}/" for pk in range(BASE + first, BASE + first + count)]


def update_of(url: str):
    return shot_update(int(url.strip("/").rsplit("/", 1)[1]), title="t")


def publish(urls_: list[str]) -> list[int]:
    """Publish an update of each URL; how many subscriptions each reached."""
    return sending.get().publish([update_of(url) for url in urls_])


def stats(gateway: Gateway) -> dict:
    return gateway.get_json("stats")


def numsub(cluster, channels: list[str]) -> dict[str, int]:
    """Each channel's subscriber count, asked of the master owning it."""
    client = cluster.client()
    try:
        owners = {channel: client.get_node_from_key(channel) for channel in channels}
    finally:
        client.close()
    found = {}
    for channel, node in owners.items():
        with redis.Redis(host=node.host, port=node.port) as master:
            reply = master.execute_command("PUBSUB", "SHARDNUMSUB", channel)
        found[channel] = int(reply[1])
    return found


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.05)


def test_a_gateway_hears_only_the_objects_its_clients_follow(cluster_gateway):
    followed, other = urls(0, 2)
    client = Client(cluster_gateway.ws_url)
    try:
        client.subscribe(followed)
        before = stats(cluster_gateway)["updates_in"]
        # Redis itself: the followed object's channel has this gateway, the
        # other object's none (the collection is followed by nobody).
        assert publish([other, followed]) == [0, 1]
        message = client.recv()
        assert message["type"] == "update" and message["url"] == followed
        assert stats(cluster_gateway)["updates_in"] == before + 1
    finally:
        client.close()


def test_collection_subscribers_hear_every_member_once(cluster_gateway):
    members = urls(100, 24)  # over most buckets, so every master
    assert len({mode.bucket(url) for url in members}) >= 9
    listing, filtered, single = (Client(cluster_gateway.ws_url) for _ in range(3))
    try:
        listing.subscribe("/api/shot/")
        filtered.subscribe("/api/shot/?status=open")
        single.subscribe(members[5])
        before = stats(cluster_gateway)["updates_in"]
        reached = publish(members)
        # The followed object's update reaches both of its channels here...
        assert reached[5] == 2 and set(reached[:5] + reached[6:]) == {1}
        # (In no order: the members' masters are read in turn.)
        assert sorted(listing.recv()["url"] for _ in members) == members
        assert sorted(filtered.recv()["url"] for _ in members) == members
        assert single.recv()["url"] == members[5]
        # ...and is received, and sent, once.
        for client in (listing, filtered, single):
            assert client.request(action="ping") == {"type": "pong"}
        assert stats(cluster_gateway)["updates_in"] == before + len(members)
    finally:
        for client in (listing, filtered, single):
            client.close()


def test_channels_follow_clients_in_batches(cluster_gateway, redis_cluster):
    followed = urls(200, 30)
    channels = [mode.object_channel(url) for url in followed]
    clients = [Client(cluster_gateway.ws_url) for _ in followed]
    try:
        before = stats(cluster_gateway)["shard_batches"]
        for client, url in zip(clients, followed, strict=True):
            client.send(action="subscribe", url=url)
        for client, url in zip(clients, followed, strict=True):
            assert client.recv() == {"type": "subscribed", "url": url}
        assert set(numsub(redis_cluster, channels).values()) == {1}
        # 30 first subscribers (13 channels each: the object's, and the 12 of
        # the collection it might be) subscribed in a few batches: well under
        # one per subscriber (a loaded machine turns the loop more often).
        subscribed = stats(cluster_gateway)["shard_batches"] - before
        assert 1 <= subscribed <= 20, subscribed
        # A page reloading within the grace: its channel stays, no batch.
        clients[0].request(action="unsubscribe", url=followed[0])
        clients[0].subscribe(followed[0])
        assert stats(cluster_gateway)["shard_batches"] - before == subscribed
    finally:
        for client in clients:
            client.close()
    wait_for(lambda: set(numsub(redis_cluster, channels).values()) == {0})
    unsubscribed = stats(cluster_gateway)["shard_batches"] - before - subscribed
    assert 1 <= unsubscribed <= 15, unsubscribed


@contextmanager
def paused_master(redis_cluster, url: str, milliseconds: int) -> Iterator[None]:
    """The master of ``url``'s object channel holds every client's commands
    (CLIENT PAUSE) for ``milliseconds``, or until the block ends."""
    client = redis_cluster.client()
    node = client.get_node_from_key(mode.object_channel(url))
    client.close()
    master = redis.Redis(port=node.port)
    try:
        master.execute_command("CLIENT", "PAUSE", milliseconds, "ALL")
        yield
    finally:
        master.execute_command("CLIENT", "UNPAUSE")
        master.close()


def test_a_subscribe_is_answered_once_its_channel_is_held(
    cluster_gateway, redis_cluster
):
    url = urls(300, 1)[0]
    page = Client(cluster_gateway.ws_url)
    try:
        # The master holds its clients' commands (SSUBSCRIBE too) for a while.
        with paused_master(redis_cluster, url, 800):
            started = time.monotonic()
            page.subscribe(url)
            assert time.monotonic() - started >= 0.5
            # Answered: the gateway holds the channel, the next update arrives.
            assert publish([url]) == [1]
            assert page.recv()["url"] == url
    finally:
        page.close()


def test_four_gateways_with_disjoint_objects_each_hear_a_quarter(pushy_cluster):
    """The issue's measure: each of 4 gateways receives close to a quarter."""
    followed = urls(400, 100)
    shares = [followed[i::4] for i in range(4)]
    with ExitStack() as stack:
        gateways = [
            stack.enter_context(Gateway(pushy_cluster, pushy_settings=OPEN))
            for _ in range(4)
        ]
        clients = [Client(g.ws_url) for g in gateways]
        for client in clients:
            stack.callback(client.close)
        for client, share in zip(clients, shares, strict=True):
            for url in share:
                client.subscribe(url)
        before = [stats(g)["updates_in"] for g in gateways]
        assert set(publish(followed)) == {1}  # each update reached one gateway
        for client, share in zip(clients, shares, strict=True):
            assert sorted(client.recv()["url"] for _ in share) == sorted(share)
        received = [
            stats(g)["updates_in"] - b for g, b in zip(gateways, before, strict=True)
        ]
        assert all(n / len(followed) <= 0.3 for n in received), received
        assert received == [25, 25, 25, 25]


def test_a_channel_not_held_in_time_ends_in_a_resync(cluster_gateway, redis_cluster):
    """No silent gap: the subscribe is answered after HELD_TIMEOUT, that
    master's listener starts over, and the page is told to resync."""
    url = urls(500, 1)[0]
    page = Client(cluster_gateway.ws_url, timeout=10)
    try:
        with paused_master(redis_cluster, url, 3000):
            started = time.monotonic()
            page.subscribe(url)
            assert 1.5 <= time.monotonic() - started < 3.0
            assert page.recv() == {"type": "resync"}
            assert publish([url]) == [1]
            assert page.recv()["url"] == url
    finally:
        page.close()


def test_a_change_lost_with_a_masters_subscription_is_not_missed(
    cluster_gateway, redis_cluster
):
    """A versioned page's horizon starts at its subscribe's lookup: a change
    published while its master's subscription is down still resyncs it."""
    url = urls(600, 1)[0]
    page = Client(cluster_gateway.ws_url)
    try:
        held = page.request(action="subscribe", url=url, version=None)["version"]
        again = page.request(action="subscribe", url=url, version=held)
        assert again["type"] == "subscribed"
        client = redis_cluster.client()
        node = client.get_node_from_key(mode.object_channel(url))
        client.close()
        with redis.Redis(port=node.port) as master:
            assert master.client_kill_filter(_type="pubsub") == 1
        publish([url])  # within the listener's first backoff (0.1 s), mostly
        heard = page.recv()
        # Lost with the subscription: a resync of the URL; else delivered.
        assert heard["url"] == url and heard["type"] in ("resync", "update"), heard
    finally:
        page.close()
