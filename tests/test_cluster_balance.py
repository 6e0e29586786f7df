"""``manage.py pushy_cluster_balance`` on a real cluster (tests/support/cluster.py):
the per-bucket counts, the plan printed, the slots moved while a gateway
delivers, and a migration stopped half-way. Each test that moves slots has a
private 3 + 3 cluster (they change it for good)."""

from __future__ import annotations

import io
import threading
import time

import pytest
from django.core.management import CommandError, call_command
from redis.crc import key_slot

from pushy import cluster_balance, sending
from pushy import redis_cluster as mode
from tests import test_cluster_failover as failover
from tests.gateway.clients import shot_update
from tests.support.cluster import ClusterNode, ClusterServers, _known
from tests.support.gateway import Gateway
from tests.test_cluster_failover import Reader, resynced, titles

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(90),
    pytest.mark.django_db(transaction=True),
]

OPEN = {"AUTHORIZE": "pushy.authorization.allow_all"}
# The failover tests' fixtures: a private cluster, pushy pointed at it.
cluster, cluster_url = failover.cluster, failover.cluster_url


def pks_in(buckets: set[int], each: int = 1) -> dict[int, list[int]]:
    """``each`` shot pks whose URLs fall in each of ``buckets``."""
    found: dict[int, list[int]] = {n: [] for n in buckets}
    pk = 0
    while any(len(pks) < each for pks in found.values()):
        pk += 1
        number = mode.bucket(f"/api/shot/{pk}/")
        if number in found and len(found[number]) < each:
            found[number].append(pk)
    return found


def owner_of(cluster: ClusterServers, number: int) -> int:
    """The port of the master owning bucket ``number``'s slot (the first
    master's map; a master added by a test too)."""
    slot = key_slot(mode.tag(number).encode())
    with cluster.masters[0].client() as client:
        for first, last, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
            if first <= slot <= last:
                return int(master[1])
    raise LookupError(slot)


def layout(cluster: ClusterServers) -> list[int]:
    return [owner_of(cluster, n) for n in range(mode.BUCKETS)]


def keys_per_slot(cluster: ClusterServers) -> dict[int, int]:
    slots = cluster_balance.bucket_slots()
    found = {}
    for node in cluster.masters:
        client = node.client()
        for slot in slots:
            found[slot] = found.get(slot, 0) + client.cluster("countkeysinslot", slot)
        client.close()
    return found


class Load:
    """A thread publishing updates of ``pks`` (each as often as its weight)
    through pushy's sender until stopped; what it published, per URL."""

    def __init__(self, weights: dict[int, int]) -> None:
        self.weights = weights
        self.sent: dict[str, list[str]] = {f"/api/shot/{pk}/": [] for pk in weights}
        self._stop = threading.Event()
        self._flowing = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        """Once the first round is confirmed (each URL's keys exist)."""
        self._thread.start()
        assert self._flowing.wait(15), "the load did not start"
        return self

    def _run(self) -> None:
        sender, round_ = sending.get(), 0
        while not self._stop.is_set():
            round_ += 1
            for pk, weight in self.weights.items():
                for i in range(weight):
                    title = f"r{round_}.{i}"
                    sender.publish_quietly([shot_update(pk, title=title)])
                    self.sent[f"/api/shot/{pk}/"].append(title)
            if sender.flush(5):
                self._flowing.set()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("pushy_cluster_balance", *args, stdout=out)
    return out.getvalue()


def test_each_bucket_counts_its_publishes_exactly(cluster, cluster_url):
    client = cluster.client()
    before = cluster_balance.totals(client)
    expected = [0] * mode.BUCKETS
    sender = sending.get()
    for pk in range(1, 60):
        for _ in range(pk % 4 + 1):
            sender.publish_quietly([shot_update(pk, title="x")])
            expected[mode.bucket(f"/api/shot/{pk}/")] += 1
    assert sender.flush(10)
    after = cluster_balance.totals(client)
    client.close()
    assert [a - b for a, b in zip(after, before, strict=True)] == expected
    assert sum(expected) > 100 and min(expected) > 0


def test_a_dry_run_prints_the_plan_and_moves_nothing(cluster, cluster_url):
    # Buckets 1, 2 and 3 (all on the first master) carry nearly everything.
    hot = pks_in({1, 2, 3})
    before = layout(cluster)
    with Load({hot[1][0]: 3, hot[2][0]: 3, hot[3][0]: 3}):
        out = run("--window", "1", "--dry-run")
    assert "Busiest master: 100% -> 3" in out, out
    assert out.count(" -> 127.0.0.1:") == 2, out  # two buckets would move
    assert "Nothing moved." in out
    assert layout(cluster) == before


def test_balancing_moves_the_hot_buckets_apart_while_updates_flow(cluster, cluster_url):
    hot = pks_in({1, 2, 3})
    pks = [hot[n][0] for n in (1, 2, 3)]
    urls = [f"/api/shot/{pk}/" for pk in pks]
    first = owner_of(cluster, 1)
    store = cluster.client()
    assert {owner_of(cluster, n) for n in (1, 2, 3)} == {first}
    with Gateway(cluster_url, pushy_settings=OPEN) as gateway:
        assert gateway.wait_for_health(200, 10) is not None
        reader = Reader(gateway.ws_url)
        for url in urls:
            held = reader.subscribe(url, version=None)["version"]
            reader.subscribe(url, version=held)
        reader.start()
        try:
            with Load({pk: 3 for pk in pks}) as load:
                counted = cluster_balance.totals(store)
                out = run("--window", "1")
                # The counters moved with their slots: none went back.
                after = cluster_balance.totals(store)
                assert all(a >= b for a, b in zip(after, counted, strict=True))
            assert gateway.wait_for_health(200, 10) < 10
            sender = sending.get()
            for pk, url in zip(pks, urls, strict=True):
                sender.publish_quietly([shot_update(pk, title="final")])
                load.sent[url].append("final")
            assert sender.flush(10)

            def finals(messages):
                return all(titles(messages, url)[-1:] == ["final"] for url in urls)

            reader.wait_for(finals)
        finally:
            reader.close()
            store.close()
    # The three hot buckets are on three masters now, and two of them moved.
    assert len({owner_of(cluster, n) for n in (1, 2, 3)}) == 3, out
    assert "Moved 2 buckets' slots" in out, out
    assert "Busiest master: 100% -> 3" in out, out
    for url in urls:
        arrived = titles(reader.messages, url)
        missed = [t for t in load.sent[url] if t not in arrived]
        assert not missed or resynced(reader.messages, url), (url, missed)
    moved = [url for url in urls if resynced(reader.messages, url)]
    assert moved  # a migrated book is a new epoch: its pages resync


def test_a_migration_stopped_half_way_is_reported_and_finished(cluster, cluster_url):
    sender = sending.get()
    for pk in range(1, 40):
        sender.publish_quietly([shot_update(pk, title="x")])
    assert sender.flush(10)
    before = keys_per_slot(cluster)
    slot = cluster_balance.bucket_slots()[1]
    client = cluster.client()
    nodes = cluster_balance.masters(client, cluster_url)
    client.close()
    source = next(n for n in nodes if n.port == owner_of(cluster, 1))
    target = next(n for n in nodes if n is not source)
    others = [n for n in nodes if n not in (source, target)]

    def stop_at_the_owner_change(step: str) -> None:
        if "NODE" in step:
            raise KeyboardInterrupt

    try:
        with pytest.raises(cluster_balance.BalanceError) as stopped:
            cluster_balance.migrate(
                slot, source, target, others, stop_at_the_owner_change
            )
        message = str(stopped.value)
        assert (
            f"slot {slot} is MIGRATING from {source.name} to {target.name}" in message
        )
        assert "none left on the source" in message
        assert "--finish" in message
        # A run that would plan refuses while it is half-way.
        with pytest.raises(CommandError, match="Run with --finish first"):
            run("--window", "0", "--dry-run")
        out = run("--finish")
        assert f"Finished: slot {slot} now on {target.name}" in out, out
        assert "No slot migration is half-way." in run("--finish")
    finally:
        for node in nodes:
            node.client.close()
    assert owner_of(cluster, 1) == target.port
    assert keys_per_slot(cluster) == before  # no key lost


def test_a_master_added_without_slots_is_given_a_bucket(cluster, cluster_url):
    added = ClusterNode()
    added.launch()
    try:
        added.log.wait_for("Ready to accept connections", 20)
        with added.client() as client:
            added.node_id = client.execute_command("CLUSTER", "MYID")
            port = cluster.masters[0].port
            client.execute_command("CLUSTER", "MEET", "127.0.0.1", port)
        # Until every master knows it (gossip: polled, as the support does).
        first = cluster.masters[0].client()
        deadline = time.monotonic() + 20
        while added.node_id not in _known(first):
            assert time.monotonic() < deadline, "the new master was not met"
            time.sleep(0.05)
        first.close()
        added.log.wait_for("Cluster state changed: ok", 20)
        # Four equally hot buckets, all on the first master: one each.
        hot = pks_in({0, 1, 2, 3})
        with Load({pks[0]: 2 for pks in hot.values()}):
            out = run("--window", "1")
        assert f"127.0.0.1:{added.port}: 0% -> 25%" in out, out
        owners = {owner_of(cluster, n) for n in (0, 1, 2, 3)}
        assert owners == {n.port for n in cluster.masters} | {added.port}
    finally:
        added.stop()
