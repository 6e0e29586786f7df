"""Following a Redis Cluster's slot map (pushy/gateway/cluster_topology.py,
cluster_listener.py) with fake masters' listeners: which listeners are kept,
narrowed or made anew, what /health and the versions' horizons are told. The
real thing runs in tests/test_cluster_failover.py."""

from __future__ import annotations

import collections

import pytest

from pushy import redis_cluster, sending
from pushy.gateway import cluster_listener, cluster_topology
from pushy.gateway.cluster_listener import ClusterVersionBook, MasterListener
from pushy.gateway.listener import Hooks
from pushy.messages import Update

A, B, C = ("10.0.0.1", 7000), ("10.0.0.2", 7000), ("10.0.0.3", 7000)
LABELS = ["app.one", "app.two"]


class FakeMaster:
    """A master's listener that connects nowhere: live when the test says."""

    def __init__(self, url, host, port, channels, events=None, rejoin=False, **kw):
        self.host, self.port, self.channels = host, port, channels
        self.events, self.rejoin = events, rejoin
        self.live = self.started = self.stopped = False

    @property
    def address(self):
        return (self.host, self.port)

    def start(self):
        self.started = True

    def stop(self):
        self.stopped = True

    def join(self):
        self.live = True
        self.events.changed()

    def __str__(self):
        return f"{self.host}:{self.port}"


@pytest.fixture
def made(monkeypatch):
    """The cluster listener, with fake masters; what it counted and told."""
    monkeypatch.setattr(cluster_listener, "MasterListener", FakeMaster)
    counted = collections.Counter()
    told = []
    hooks = Hooks(update=print, resync=print, count=lambda n: counted.update([n]))
    listener = cluster_listener.ClusterListener(
        "redis+cluster://10.0.0.1:7000", LABELS, hooks, {}, coverage=told.append
    )
    return listener, counted, told


def bucket_channels(numbers) -> tuple[str, ...]:
    return tuple(
        redis_cluster.update_channel(n, label) for n in numbers for label in LABELS
    )


# Buckets 0-3 on A, 4-7 on B, 8-11 on C, as a fresh 3-master cluster has them.
SHARES = {
    A: bucket_channels(range(0, 4)),
    B: bucket_channels(range(4, 8)),
    C: bucket_channels(range(8, 12)),
}


def started(listener) -> dict:
    listener.channels = [c for share in SHARES.values() for c in share]
    listener.follow(dict(SHARES))
    for master in listener.masters.values():
        master.join()
    return dict(listener.masters)


def test_at_start_each_master_gets_its_share_and_nothing_is_resynced(made):
    listener, counted, told = made
    before = started(listener)
    assert {a: tuple(m.channels) for a, m in before.items()} == SHARES
    assert not any(m.rejoin for m in before.values())
    assert told[-1] == set() and listener.live and listener.detail is None
    assert not counted  # a start is no change of the map


def test_a_failed_over_master_is_replaced_and_its_buckets_uncovered_until_then(
    made,
):
    listener, counted, told = made
    before = started(listener)
    before[A].live = False  # its connection is lost
    before[A].events.changed()
    assert told[-1] == {0, 1, 2, 3}
    assert "on 10.0.0.1:7000 not subscribed" in listener.detail
    promoted = ("10.0.0.9", 7000)
    shares = {B: SHARES[B], C: SHARES[C], promoted: SHARES[A]}
    moved = listener.follow(shares, "lost")
    assert moved and before[A].stopped
    new = listener.masters[promoted]
    assert new.rejoin and new.started  # clients resync once it subscribed
    assert listener.masters[B] is before[B] and not before[B].stopped
    assert told[-1] == {0, 1, 2, 3} and not listener.live
    new.join()
    assert told[-1] == set() and listener.live
    assert counted == {"cluster_map_changes": 1, "cluster_channels_moved": 8}


def test_a_migrated_slot_narrows_the_source_and_renews_the_target(made):
    listener, counted, told = made
    before = started(listener)
    channel = SHARES[A][-1]  # bucket 3's
    moving = [c for c in SHARES[A] if c.startswith(redis_cluster.tag(3))]
    pubsub = type("PubSub", (), {"shard_channels": {c.encode(): None for c in moving}})
    for name in moving:  # Redis' SUNSUBSCRIBE of each, on the source
        message = {"type": "sunsubscribe", "channel": name.encode()}
        MasterListener._notice(before[A], pubsub, message)
    assert channel not in before[A].channels and set(listener.orphans) == set(moving)
    assert told[-1] == {3} and not listener.live
    assert "2 channels moved to another master" in listener.detail
    # A map read from a node that has not heard yet: the orphans stay put.
    assert not listener.follow(dict(SHARES), "sunsubscribe")
    assert listener.masters[A] is before[A] and set(listener.orphans) == set(moving)
    after = {
        A: tuple(c for c in SHARES[A] if c not in moving),
        B: SHARES[B] + tuple(moving),
        C: SHARES[C],
    }
    assert listener.follow(after, "sunsubscribe")
    assert listener.masters[A] is before[A] and not before[A].stopped  # narrowed
    assert before[B].stopped and listener.masters[B].rejoin  # gained: made anew
    assert listener.masters[C] is before[C]
    assert not listener.orphans
    listener.masters[B].join()
    assert listener.live and told[-1] == set()
    assert counted == {"cluster_map_changes": 1, "cluster_channels_moved": 2}


def test_a_move_found_by_a_periodic_read_narrows_the_source_too(made):
    listener, counted, told = made
    before = started(listener)
    moving = bucket_channels([3])
    after = {
        A: tuple(c for c in SHARES[A] if c not in moving),
        B: SHARES[B] + moving,
        C: SHARES[C],
    }
    assert listener.follow(after, "a periodic check")
    # The source keeps its connection (Redis unsubscribed it from those).
    assert listener.masters[A] is before[A] and not before[A].stopped
    assert listener.masters[A].channels == list(after[A])
    assert listener.masters[B].rejoin


def test_our_own_unsubscribe_is_no_move():
    events = cluster_listener.MasterEvents(
        changed=list, suspect=print, moved_away=pytest.fail
    )
    master = MasterListener(
        "redis+cluster://h:1", "h", 1, ["x"], events=events,
        hooks=Hooks(update=print, resync=print, count=print),
    )  # fmt: skip
    pubsub = type("PubSub", (), {"shard_channels": {}})  # redis-py removed it
    master._notice(pubsub, {"type": "sunsubscribe", "channel": b"x"})
    master._notice(pubsub, {"type": "pong", "channel": None})
    assert master.channels == ["x"]


def update_in(number: int, version: int) -> Update:
    pk = next(pk for pk in range(1000) if redis_cluster.bucket(f"/s/{pk}/") == number)
    return Update(url=f"/s/{pk}/", event="update", model="a.b", pk=pk, version=version)


def test_an_uncovered_bucket_goes_back_to_what_arrived_and_no_baseline_moves_it():
    book = ClusterVersionBook("redis+cluster://h:1", 3600)
    book.saw_baseline(100)  # the first lookup
    book.saw_update(update_in(2, 150))
    book.saw_baseline(300)
    assert book.horizons[2] == 300 and book.received[2] == 150
    book.uncovered({2, 5})
    # A loss may have begun before it was noticed: only what arrived counts.
    assert book.horizons[2] == 150 and book.horizons[5] == 100
    book.saw_baseline(400)
    assert (book.horizons[2], book.horizons[5], book.horizons[0]) == (150, 100, 400)
    book.uncovered(set())  # subscribed again
    book.saw_baseline(500)
    assert book.horizon == (500,) * redis_cluster.BUCKETS


def test_the_watcher_reads_again_until_every_channel_is_subscribed():
    reads = iter([OSError("no node"), {A: ("x",)}, {B: ("x",)}])
    followed = []

    def read():
        found = next(reads)
        if isinstance(found, Exception):
            raise found
        return found

    watcher = cluster_topology.SlotMapWatcher(
        read, lambda shares, why: followed.append((shares, why)),
        settled=lambda: len(followed) == 2,
    )  # fmt: skip
    watcher.suspect("10.0.0.1:7000: connection refused")
    watcher.suspect("a later reason")  # the first one is kept
    watcher._settle()
    assert followed == [
        ({A: ("x",)}, "10.0.0.1:7000: connection refused"),
        ({B: ("x",)}, "10.0.0.1:7000: connection refused"),
    ]


def test_moves_are_counted_and_described():
    moved = cluster_topology.moves(
        {A: ["x", "y"], B: ["z"]}, {B: ("x", "z"), C: ("y",)}
    )
    assert moved == {(A, B): 1, (A, C): 1}
    assert cluster_topology.moves({}, {A: ("x",)}) == {(None, A): 1}
    text = cluster_topology.describe({(A, B): 3, (None, C): 1})
    assert text == (
        "3 channels from 10.0.0.1:7000 to 10.0.0.2:7000; "
        "1 channel from nowhere to 10.0.0.3:7000"
    )


def test_an_update_is_stranded_only_by_a_later_one_of_its_own_bucket():
    meanings = [("update", "a1"), ("update", "b1"), ("update", "a2"), ("count", "x")]
    replies = [ValueError("MOVED"), [1, 5], [1, 6], 1]
    group = {"a1": 0, "a2": 0, "b1": 1}.get
    ran = sending._last_ran(meanings, replies, group)
    assert ran == {0: 2, 1: 1}
    assert sending._stranded(meanings[0], 0, ran, group)  # a2 of its bucket ran
    assert not sending._stranded(meanings[1], 1, ran, group)
    assert not sending._stranded(meanings[3], 3, ran, group)
