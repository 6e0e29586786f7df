"""Presence on a Redis Cluster: the presence tests of one Redis
(tests/gateway/test_presence.py), run again with two gateways on the private
3 + 3 cluster. Presence's keys and its channel share one hash tag, so a join
still writes, reads and tells in one MULTI on one master (pushy/channels.py)."""

from __future__ import annotations

import pytest

from pushy.channels import presence_channel, presence_key_prefix
from tests.gateway.clients import Client
from tests.gateway.test_presence import (  # noqa: F401 -- run here, on the cluster
    HEARTBEAT,
    OPEN_URL,
    clients,
    join,
    login,
    names,
    people,
    presence_where,
    test_a_closed_connection_leaves,
    test_a_killed_gateways_members_leave_within_four_heartbeats,
    test_anonymous_visitors_are_counted_never_named,
    test_people_on_two_gateways_see_each_other_join_and_leave,
    test_tabs_of_one_user_count_once_across_gateways,
)
from tests.support.gateway import Gateway
from tests.test_cluster_failover import cluster, cluster_url  # noqa: F401 -- fixtures
from tests.test_cluster_mode import pushy_cluster  # noqa: F401 -- a fixture

pytestmark = [pytest.mark.timeout(90), pytest.mark.django_db(transaction=True)]


@pytest.fixture
def gateways(pushy_cluster, django_db_setup):  # noqa: F811
    """Two gateways on the cluster, with a short presence heartbeat."""
    options = {"DB_POOL_SIZE": 2, "PRESENCE_HEARTBEAT": HEARTBEAT}
    with Gateway(pushy_cluster, pushy_settings=options) as one:
        with Gateway(pushy_cluster, pushy_settings=options) as two:
            yield one, two


def test_presence_keys_and_channel_share_one_slot(gateways, redis_cluster, clients):  # noqa: F811
    one, _ = gateways
    join(clients(one))
    channel, prefix = presence_channel(), presence_key_prefix()
    assert channel.startswith("{") and prefix.startswith(channel)
    client = redis_cluster.client(decode_responses=True)
    try:
        slot = client.keyslot(channel)
        keys = set(client.cluster_get_keys_in_slot(slot, 100))
    finally:
        client.close()
    # The URL's people, this gateway's URLs, the gateways' heartbeats: all there.
    assert prefix + "url:" + OPEN_URL in keys, keys
    assert prefix + "gateways" in keys, keys
    assert any(key.startswith(prefix + "url-set:") for key in keys), keys


def test_presence_survives_a_failover_of_its_master(cluster, cluster_url, people):  # noqa: F811
    """The master owning presence's slot is killed: its replica takes over, the
    gateways follow, and presence goes on (members written again where the
    replica had not had them, rooms read afresh)."""
    client = cluster.client()
    try:
        port = client.get_node_from_key(presence_channel()).port
    finally:
        client.close()
    victim = next(i for i, node in enumerate(cluster.masters) if node.port == port)
    options = {"DB_POOL_SIZE": 2, "PRESENCE_HEARTBEAT": HEARTBEAT}
    opened: list[Client] = []
    with (
        Gateway(cluster_url, pushy_settings=options) as one,
        Gateway(cluster_url, pushy_settings=options) as two,
    ):
        try:
            alice = Client(one.ws_url, timeout=10, cookie=login(people[0]))
            bob = Client(two.ws_url, timeout=10, cookie=login(people[1]))
            opened += [alice, bob]
            join(alice)
            join(bob)
            presence_where(alice, lambda m: m["count"] == 2)
            cluster.kill_master(victim)
            cluster.wait_for_promotion(victim)
            for gateway in (one, two):
                gateway.wait_for_health(200, 15)
            newcomer = Client(two.ws_url, timeout=10)
            opened.append(newcomer)
            _, first = join(newcomer)
            if first["count"] < 3:  # read before both wrote their members again
                first = presence_where(newcomer, lambda m: m["count"] == 3, 15)
            assert sorted(names(first)) == ["alice", "bob"]
            seen = presence_where(alice, lambda m: m["count"] == 3, 15)
            assert seen["anonymous"] == 1
            bob.close()
            assert names(presence_where(alice, lambda m: m["count"] == 2, 15)) == [
                "alice"
            ]
        finally:
            for opened_client in opened:
                opened_client.close()
