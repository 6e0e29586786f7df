"""Following a Redis Cluster's slot map (pushy/gateway/cluster_topology.py,
cluster_listener.py) with fake masters' listeners: which channels move from
which master's batch to which, which listeners are kept or made anew, what
/health, the waiting subscribes and the versions' horizons are told. The
real thing runs in tests/test_cluster_failover.py."""

from __future__ import annotations

import collections

import gevent
import pytest
from redis.crc import key_slot

from pushy import redis_cluster, sending
from pushy.gateway import cluster_listener, cluster_topology
from pushy.gateway.cluster_listener import ClusterVersionBook, MasterListener
from pushy.gateway.interest import Batch
from pushy.gateway.listener import Hooks
from pushy.messages import Update

A, B, C = ("10.0.0.1", 7000), ("10.0.0.2", 7000), ("10.0.0.3", 7000)


class FakeMaster:
    """A master's listener that connects nowhere: live when the test says."""

    def __init__(self, url, host, port, batch, events=None, rejoin=False, **kw):
        self.host, self.port, self.batch = host, port, batch
        self.events, self.rejoin = events, rejoin
        self.live = self.started = self.stopped = False

    @property
    def address(self):
        return (self.host, self.port)

    def start(self):
        self.started = True

    def stop(self):
        self.stopped = True
        self.batch.lost()

    def join(self):
        """Subscribed: Redis confirmed every channel of its batch."""
        for group in self.batch.restart():
            for channel in group:
                self.batch.heard(channel)
        self.batch.joined()
        self.live = True
        self.events.changed()

    def send_due(self):
        pass

    def __str__(self):
        return f"{self.host}:{self.port}"


def url_in(number: int, start: int = 0) -> str:
    pk = next(
        pk for pk in range(start, 9999) if redis_cluster.bucket(f"/s/{pk}/") == number
    )
    return f"/s/{pk}/"


# Two followed objects in each bucket (the interest: their channels, and those
# of the collection /s/ in every bucket).
URLS = [url_in(n, start) for n in range(redis_cluster.BUCKETS) for start in (0, 500)]


@pytest.fixture
def made(monkeypatch):
    """The cluster listener, with fake masters; what it counted and told."""
    monkeypatch.setattr(cluster_listener, "MasterListener", FakeMaster)
    counted = collections.Counter()
    told = []
    hooks = Hooks(update=print, resync=print, count=lambda n: counted.update([n]))
    listener = cluster_listener.ClusterListener(
        "redis+cluster://10.0.0.1:7000", hooks, {}, coverage=told.append
    )
    for url in URLS:  # before the map is read: counted only
        listener.interest.want(url)
    return listener, counted, told


# Buckets 0-3 on A, 4-7 on B, 8-11 on C, as a fresh 3-master cluster has them.
SLOT_MAP = [
    A if slot < 5461 else B if slot < 10923 else C
    for slot in range(redis_cluster.SLOTS)
]


def bucket_slot(number: int) -> int:
    return key_slot(redis_cluster.tag(number).encode())


def held(listener, address) -> set[str]:
    """What the batch of ``address`` holds, its anchor left out."""
    return listener.batches[address].wanted - {listener.anchors[address]}


def in_buckets(listener, numbers) -> set[str]:
    slots = {bucket_slot(n) for n in numbers}
    return {c for c in listener.interest.needed() if _slot(c) in slots}


def _slot(channel: str) -> int:
    return key_slot(channel.encode())


def started(listener) -> dict:
    listener.follow(list(SLOT_MAP))
    for master in listener.masters.values():
        master.join()
    return dict(listener.masters)


def test_at_start_each_master_holds_the_channels_of_its_slots(made):
    listener, counted, told = made
    before = started(listener)
    assert held(listener, A) == in_buckets(listener, range(0, 4))
    assert held(listener, B) == in_buckets(listener, range(4, 8))
    assert held(listener, C) == in_buckets(listener, range(8, 12))
    for address in (A, B, C):  # an anchor in a slot of its own master's
        assert SLOT_MAP[_slot(listener.anchors[address])] == address
        assert listener.batches[address].confirmed == listener.batches[address].wanted
    assert not any(m.rejoin for m in before.values())
    assert told[-1] == set() and listener.live and listener.detail is None
    assert not counted  # a start is no change of the map
    # A periodic check finding the same map looks at no channel (there may be
    # a million).
    listener._leaving = lambda: pytest.fail("channels looked at")
    assert not listener.follow(list(SLOT_MAP), "a periodic check")


def test_a_failed_over_master_is_replaced_with_its_channels_and_counts(made):
    listener, counted, told = made
    before = started(listener)
    counts = dict(listener.interest.counts)
    on_a = held(listener, A)
    before[A].live = False  # its connection is lost
    before[A].batch.lost()
    before[A].events.changed()
    assert told[-1] == {0, 1, 2, 3}
    assert f"{len(on_a) + 1} channels on 10.0.0.1:7000 not subscribed" in (
        listener.detail
    )
    promoted = ("10.0.0.9", 7000)
    moved = listener.follow([promoted if a == A else a for a in SLOT_MAP], "lost")
    assert moved and before[A].stopped and A not in listener.batches
    new = listener.masters[promoted]
    assert new.rejoin and new.started  # clients resync once it subscribed
    assert held(listener, promoted) == on_a and new.batch is listener.batches[promoted]
    assert listener.interest.counts == counts  # the interest is the same
    assert listener.masters[B] is before[B] and not before[B].stopped
    assert told[-1] == {0, 1, 2, 3} and not listener.live
    new.join()
    assert told[-1] == set() and listener.live
    assert counted == {"cluster_map_changes": 1, "cluster_channels_moved": len(on_a)}
    # The last subscriber of a URL leaving: unsubscribed on the new owner.
    url = next(u for u in URLS if redis_cluster.bucket(u) == 1)
    listener.interest.grace = 0
    listener.interest.drop(url)
    listener.interest._sweep()
    assert redis_cluster.object_channel(url) in new.batch.to_remove


def sunsubscribed_by_redis(master, channels) -> None:
    """Redis' SUNSUBSCRIBE of each of ``channels`` (its slot left the node)."""
    pubsub = type(
        "PubSub", (), {"shard_channels": {c.encode(): None for c in channels}}
    )
    for name in channels:
        message = {"type": "sunsubscribe", "channel": name.encode()}
        MasterListener._notice(master, pubsub, message)
    assert not pubsub.shard_channels  # not subscribed again on a reconnect


def test_a_migrated_slot_is_parked_then_held_by_its_new_owner(made, caplog):
    listener, counted, told = made
    before = started(listener)
    slot = bucket_slot(3)
    moving = in_buckets(listener, [3])
    url = next(u for u in URLS if redis_cluster.bucket(u) == 3)
    sunsubscribed_by_redis(before[A], sorted(moving)[:1])  # the first tells
    assert not moving & before[A].batch.wanted and set(listener.orphans) == {slot}
    assert listener.parked.wanted == moving
    assert told[-1] == {3} and not listener.live
    assert f"{len(moving)} channels of 1 slots moved" in listener.detail
    # A subscribe now waits for the channels' new owner to confirm them.
    waiting = gevent.spawn(listener.interest.ready, url, 5.0)
    gevent.sleep(0.05)
    assert not waiting.ready()
    # A map read from a node that has not heard yet: the slot stays parked.
    assert not listener.follow(list(SLOT_MAP), "sunsubscribe")
    assert listener.masters[A] is before[A] and listener.parked.wanted == moving
    after = list(SLOT_MAP)
    after[slot] = B
    assert listener.follow(after, "sunsubscribe")
    assert listener.masters[A] is before[A] and not before[A].stopped  # narrowed
    assert before[B].stopped and listener.masters[B].rejoin  # gained: made anew
    assert listener.masters[C] is before[C]
    assert not listener.orphans and not listener.parked.wanted
    assert moving <= listener.batches[B].wanted
    assert not waiting.ready()  # the new owner has not confirmed them yet
    listener.masters[B].join()
    assert waiting.get(timeout=1) is True
    assert listener.live and told[-1] == set()
    assert counted == {"cluster_map_changes": 1, "cluster_channels_moved": len(moving)}
    # Parked, they still count as the source's: the log says where they went.
    assert f"{len(moving)} channels from 10.0.0.1:7000 to 10.0.0.2:7000" in caplog.text


def test_a_parked_channel_not_held_in_time_is_not_confirmed(made):
    listener, _, _ = made
    before = started(listener)
    url = next(u for u in URLS if redis_cluster.bucket(u) == 2)
    sunsubscribed_by_redis(before[A], [redis_cluster.object_channel(url)])
    assert listener.interest.ready(url, 0.05) is False
    assert not before[A].batch.stuck  # no reason to start A's listener over


def test_a_move_found_by_a_periodic_read_narrows_the_source_too(made):
    listener, counted, told = made
    before = started(listener)
    moving = in_buckets(listener, [3])
    after = list(SLOT_MAP)
    after[bucket_slot(3)] = B
    assert listener.follow(after, "a periodic check")
    # The source keeps its connection (Redis unsubscribed it from those).
    assert listener.masters[A] is before[A] and not before[A].stopped
    assert held(listener, A) == in_buckets(listener, range(0, 3))
    assert not moving & before[A].batch.to_remove  # no SUNSUBSCRIBE of ours
    assert listener.masters[B].rejoin and moving <= held(listener, B)


def test_a_moved_anchor_is_made_anew_in_a_slot_its_master_owns(made):
    listener, _, _ = made
    before = started(listener)
    anchor = listener.anchors[A]
    after = list(SLOT_MAP)
    after[_slot(anchor)] = B
    assert not listener.follow(after, "a periodic check")  # no channel of ours
    assert listener.anchors[A] != anchor and after[_slot(listener.anchors[A])] == A
    assert anchor not in listener.batches[B].wanted
    assert listener.masters[B] is before[B]  # it gained nothing


def test_our_own_unsubscribe_is_no_move():
    moved = []
    events = cluster_listener.MasterEvents(
        changed=list, suspect=print, moved_away=lambda m, c: moved.append(c)
    )
    batch = Batch(["anchor"])
    master = MasterListener(
        "redis+cluster://h:1", "h", 1, batch, events=events,
        hooks=Hooks(update=print, resync=print, count=print),
    )  # fmt: skip
    batch.add("x")
    batch.take()
    batch.heard("x")
    batch.remove("x")
    assert batch.take() == ([], [["x"]])  # our SUNSUBSCRIBE of x, sent
    pubsub = type("PubSub", (), {"shard_channels": {}})  # redis-py removed it
    master._notice(pubsub, {"type": "sunsubscribe", "channel": b"x"})
    master._notice(pubsub, {"type": "pong", "channel": None})
    assert moved == []
    # Another one for x: Redis' own this time (the slot left the node).
    master._notice(pubsub, {"type": "sunsubscribe", "channel": b"x"})
    assert moved == ["x"]


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
    reads = iter([OSError("no node"), [A], [B]])
    followed = []

    def read():
        found = next(reads)
        if isinstance(found, Exception):
            raise found
        return found

    watcher = cluster_topology.SlotMapWatcher(
        read, lambda slot_map, why: followed.append((slot_map, why)),
        settled=lambda: len(followed) == 2,
    )  # fmt: skip
    watcher.suspect("10.0.0.1:7000: connection refused")
    watcher.suspect("a later reason")  # the first one is kept
    watcher._settle()
    assert followed == [
        ([A], "10.0.0.1:7000: connection refused"),
        ([B], "10.0.0.1:7000: connection refused"),
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
