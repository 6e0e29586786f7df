"""The gateway on a Redis Cluster (issue 24): a listener per master, a horizon
per bucket, and the slot map followed.

Sharded messages stay on the master owning their channel's slot, so the gateway
``SSUBSCRIBE``s on a connection to each master (one ``Listener`` greenlet
each, with its liveness, backoff and restarts) to the channels whose slots it
owns: those its clients' URLs need (``pushy.gateway.interest``: the listener
sends that master's batch at each turn), the control channels, and an anchor
channel nobody publishes to (a subscription is never empty).

The versions of the buckets come from different books (masters, clocks), so
the gateway keeps a horizon per bucket: a book is told only its own bucket's
(a higher one from another book would look like this one going back). After
an outage the clients' URLs are compared with each book's horizon (a resync
more, never one less).

A failover or a resharding moves slots to another master
(pushy/gateway/cluster_topology.py). On the map read, each channel whose slot
changed owner leaves its old master's batch for the new one's (the interest's
counts stay as they are); a listener whose batch gained channels, or whose
master is new, is made anew, and once subscribed the clients resync as after
an outage. A slot Redis unsubscribed us from (it left the node) is *parked*
until a map read names its new owner: its channels are unconfirmed, a
subscribe waits for them. Meanwhile the buckets without a live subscription
are *uncovered*: the book takes back their horizons to the last update
received there (a loss may have begun before it was noticed) and no lookup
moves them until they are covered.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import gevent
import gevent.event
import redis
from redis.crc import key_slot

from pushy import redis_cluster
from pushy.gateway import cluster_topology
from pushy.gateway.cluster_topology import Address, SlotMap, SlotMapWatcher
from pushy.gateway.interest import Batch, Interest
from pushy.gateway.listener import Backoff, Hooks, Listener
from pushy.gateway.side_redis import side_client
from pushy.gateway.versions import CHUNK, VersionBook
from pushy.messages import Update
from pushy.redis_clients import redacted
from pushy.versions import Snapshot

logger = logging.getLogger(__name__)

# How long one SSUBSCRIBE confirmation may take.
CONFIRM_TIMEOUT = 2.0
# Seconds a slot Redis unsubscribed us from is not subscribed again on the
# same master, whatever a slot map read says (the node read may lag behind).
ORPHAN_PATIENCE = 3.0


@dataclasses.dataclass(frozen=True)
class MasterEvents:
    """What a master's listener tells the cluster listener.

    ``changed()`` when it went live or down; ``suspect(why)`` when the slot map
    may have changed (its connection failed, SSUBSCRIBE was answered MOVED);
    ``moved_away(listener, channel)`` when Redis unsubscribed it from
    ``channel`` (its slot left the node).
    """

    changed: Callable[[], object]
    suspect: Callable[[str], object]
    moved_away: Callable[[MasterListener, str], object]


class MasterListener(Listener):
    """One master's sharded subscription (a ``Listener`` in every other way),
    holding the channels of its ``Batch`` (``pushy.gateway.interest``).

    ``rejoin``: made to take channels over after a change of the slot map,
    whose updates were missed meanwhile: clients resync once it subscribed.
    """

    message_type = "smessage"

    def __init__(
        self,
        url: str,
        host: str,
        port: int,
        batch: Batch,
        events: MasterEvents | None = None,
        rejoin: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(url, "sharded channels", **kwargs)
        self.host, self.port, self.batch = host, port, batch
        self.events = events
        self._resync_due = rejoin
        # The body just handled: an update published to its object's and its
        # collection's channel comes twice in a row when both are held.
        self._last_body: bytes | None = None
        self._pubsub: redis.client.PubSub | None = None  # while pumping

    @property
    def address(self) -> Address:
        return (self.host, self.port)

    @property
    def where(self) -> str:
        return f"{self} (master of a Redis Cluster)"

    def _client(self) -> redis.Redis:
        return redis.Redis(
            host=self.host,
            port=self.port,
            **redis_cluster.node_options(self.url),
            **self._options(),
        )

    def _subscribe(self, pubsub: redis.client.PubSub) -> None:
        self._last_body = None
        groups = self.batch.restart()
        for group in groups:  # one slot per call (CROSSSLOT otherwise)
            pubsub.ssubscribe(*group)
        expected = sum(map(len, groups))
        confirmed = 0
        deadline = time.monotonic() + CONFIRM_TIMEOUT
        while confirmed < expected:
            left = deadline - time.monotonic()
            message = pubsub.get_message(timeout=max(left, 0.0))
            if message is not None and message["type"] == "ssubscribe":
                self.batch.heard(message["channel"].decode())
                confirmed += 1
            elif message is None and left <= 0:
                raise redis.TimeoutError(f"no SSUBSCRIBE confirmation from {self}")
        self.batch.joined()
        self._joined()

    def _next(self, pubsub: redis.client.PubSub, timeout: float) -> dict | None:
        batch = self.batch
        if batch.stuck:
            raise redis.TimeoutError(f"an SSUBSCRIBE at {self} was not confirmed")
        if batch.pending():  # due while the subscription was being made
            self._send(pubsub)
        return pubsub.get_message(timeout=timeout)

    def _pump(self, pubsub: redis.client.PubSub) -> None:
        self._pubsub = pubsub
        try:
            super()._pump(pubsub)
        finally:
            self._pubsub = None
            self.batch.lost()

    def send_due(self) -> None:
        """Send the batch's due commands now, while this listener waits for
        Redis (a write beside its read: the answers come to the read)."""
        pubsub = self._pubsub
        if pubsub is None or not self.batch.pending():
            return
        try:
            self._send(pubsub)
        except (redis.RedisError, OSError) as e:  # the read notices it too
            logger.debug("SSUBSCRIBE at %s not sent: %s", self, e)

    def _send(self, pubsub: redis.client.PubSub) -> None:
        """Every call written before an answer is read (they are pipelined)."""
        adds, removes = self.batch.take()
        for group in removes:
            pubsub.sunsubscribe(*group)
        for group in adds:
            pubsub.ssubscribe(*group)
        self.hooks.count("shard_batches")

    def _handle(self, channel: bytes, body: bytes) -> None:
        if body == self._last_body:
            self._last_body = None
            return
        self._last_body = body
        super()._handle(channel, body)

    def stop(self) -> None:
        super().stop()
        self.batch.lost()

    # What the cluster listener learns (cluster_topology.py) ------------------

    def _joined(self) -> None:
        super()._joined()
        if self.events is not None:
            self.events.changed()

    def _down(self) -> None:
        if self.events is not None:
            self.events.changed()

    def _lost(self, error: Exception) -> None:
        self.batch.lost()
        super()._lost(error)
        if self.events is not None and not self._stopping:
            self.events.suspect(f"{self}: {error}")

    def _notice(self, pubsub: redis.client.PubSub, message: dict) -> None:
        """A confirmation: of an SSUBSCRIBE; of an SUNSUBSCRIBE, ours (the
        batch sent it) or Redis' own (the channel's slot left this node)."""
        kind, channel = message["type"], message["channel"]
        if kind == "ssubscribe":
            self.batch.heard(channel.decode())
            return
        if kind != "sunsubscribe":
            return
        name = channel.decode("utf-8", "replace")
        if self.batch.unsubscribed(name):
            return
        pubsub.shard_channels.pop(channel, None)  # not subscribed again on a reconnect
        if self.events is not None:
            self.events.moved_away(self, name)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class ClusterListener:
    """The listeners of every master, seen as one (``Listener``'s interface).

    Which master holds a channel is read from the slot map (``route``), at
    start and whenever it may have changed (``follow``); until it is read, the
    interest only counts what it will need. ``coverage(buckets)`` is told, at
    every change, which buckets have no live subscription
    (``ClusterVersionBook.uncovered``).
    """

    def __init__(
        self,
        url: str,
        hooks: Hooks,
        controls: Mapping[str, Callable[[bytes], object]],
        coverage: Callable[[set[int]], object] | None = None,
        **kwargs,
    ) -> None:
        self.url = url
        self.pattern = "sharded channels by interest"
        self.hooks = hooks
        self.controls = controls
        self.kwargs = kwargs
        self.coverage = coverage
        self.masters: dict[Address, MasterListener] = {}
        self.batches: dict[Address, Batch] = {}
        self.anchors: dict[Address, str] = {}
        self.interest = Interest(redis_cluster.interest, self.route)
        # Slots Redis unsubscribed us from (they left the node), their new
        # owner not read yet: the master that dropped them, and when. Their
        # channels wait in ``parked``.
        self.orphans: dict[int, tuple[Address, float]] = {}
        self.parked = Batch(parked=True)
        self.uncovered: set[int] = set(range(redis_cluster.BUCKETS))
        self.events = MasterEvents(self._changed, self._suspect, self._moved_away)
        self.watcher = SlotMapWatcher(self._read, self.follow, lambda: self.live)
        self.first_attempt = gevent.event.Event()
        self._greenlet: gevent.Greenlet | None = None
        self._map: SlotMap = []  # each slot's master
        self._sending: gevent.Greenlet | None = None
        self._bucket_slots = [
            _slot(redis_cluster.tag(n)) for n in range(redis_cluster.BUCKETS)
        ]

    @property
    def live(self) -> bool:
        """Every channel subscribed, on a live connection."""
        return (
            bool(self.masters)
            and not self.orphans
            and all(m.live for m in self.masters.values())
        )

    @property
    def detail(self) -> str | None:
        """What is not subscribed, for /health (None: everything is)."""
        if self.live:
            return None
        if not self.masters:
            return "the Redis Cluster's slot map is not read yet"
        parts = [
            f"{len(m.batch.wanted)} channels on {m} not subscribed"
            for m in sorted(self.masters.values(), key=str)
            if not m.live
        ]
        if self.orphans:
            parts.append(
                f"{len(self.parked.wanted)} channels of {len(self.orphans)} slots "
                "moved to another master (following the slot map)"
            )
        return "; ".join(parts)

    def route(self, channel: str) -> Batch | None:
        """The batch of the master owning ``channel``'s slot (None: not read)."""
        if not self._map:
            return None
        slot = _slot(channel)
        if slot in self.orphans:
            return self.parked
        return self.batches[self._map[slot]]

    def start(self) -> None:
        self._changed()
        self._greenlet = gevent.spawn(self._start)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill()
        for master in list(self.masters.values()):
            master.stop()

    def _start(self) -> None:
        """Read the slot map (until the cluster answers); a listener per
        master; then follow the map (the watcher's loop)."""
        backoff = Backoff()
        while True:
            try:
                slot_map = self._read()
                break
            except (redis.RedisError, OSError) as e:
                self.first_attempt.set()
                delay = backoff.next()
                logger.warning(
                    "Redis Cluster at %s not reachable (%s); retrying in %.1fs",
                    redacted(self.url),
                    e,
                    delay,
                )
                gevent.sleep(delay)
        self.follow(slot_map)
        for master in list(self.masters.values()):
            master.first_attempt.wait()
        self.first_attempt.set()
        self.watcher.run()

    def _read(self) -> SlotMap:
        return cluster_topology.read_map(self.url)

    def _send_soon(self) -> None:
        """Commands are due: every master's go out together, once this turn's
        subscribes and unsubscribes are in (one greenlet per loop turn)."""
        if self._sending is None:
            self._sending = gevent.spawn(self._send_due)

    def _send_due(self) -> None:
        self._sending = None
        for master in list(self.masters.values()):
            master.send_due()

    # Following the slot map -------------------------------------------------

    def follow(self, slot_map: SlotMap, why: str | None = None) -> bool:
        """Hold each channel on its slot's owner in ``slot_map``; whether any
        moved.

        A channel whose owner changed leaves its batch for the new owner's.
        A listener keeps its connection when it only lost channels (Redis
        unsubscribed it already); one that gains channels, or whose master is
        new, is made anew and resyncs the clients once subscribed (``why`` is
        None at start: nothing was missed then).
        """
        first = not self._map
        if slot_map == self._map and not self.parked.wanted and self._anchored():
            # The usual periodic check: no channel is looked at.
            self._settle_orphans(slot_map)
            self._changed()
            return False
        before = self._shares()
        self._settle_orphans(slot_map)
        self._map = list(slot_map)
        for address in set(slot_map) - set(self.batches):
            self.batches[address] = Batch(notify=self._send_soon)
        if first:  # wanted before the map was read
            for channel in self.controls:
                self.route(channel).fix(channel)
            for channel in self.interest.needed():
                self.route(channel).add(channel)
        leaving = self._leaving()
        gone = set(self.batches) - set(slot_map)
        for address in gone:
            del self.batches[address]
        gaining = {self.route(channel) for channel, *_ in leaving}
        for address, master in list(self.masters.items()):
            if address in gone or master.batch in gaining:
                del self.masters[address]
                master.stop()
        for channel, fixed, waiter in leaving:
            self.route(channel).adopt(channel, fixed, waiter)
        for address, batch in self.batches.items():
            self._anchor(address, batch)
            if address not in self.masters:
                self._start_master(address, rejoin=why is not None)
        moved = cluster_topology.moves(before, self._shares())
        if why is not None and moved:
            self._log_moves(moved, why)
        self._changed()
        return bool(moved)

    def _settle_orphans(self, slot_map: SlotMap) -> None:
        """Orphaned slots leave ``parked`` once a map names their new owner
        (or names the old one after ORPHAN_PATIENCE seconds: the node that
        answered ``CLUSTER SLOTS`` may not have heard of the move yet)."""
        now = time.monotonic()
        for slot, (address, since) in list(self.orphans.items()):
            if slot_map[slot] != address or now - since >= ORPHAN_PATIENCE:
                del self.orphans[slot]

    def _leaving(self) -> list[tuple[str, bool, gevent.event.Event | None]]:
        """Each channel whose batch no longer owns its slot, released from
        it: (channel, fixed, waiter). Anchors are dropped (made anew)."""
        leaving = []
        for batch in [*self.batches.values(), self.parked]:
            for channel in sorted(batch.wanted):
                if self.route(channel) is batch:
                    continue
                fixed, waiter = batch.release(channel)
                if channel in self.anchors.values():
                    if waiter is not None:
                        waiter.set()
                    continue
                leaving.append((channel, fixed, waiter))
        return leaving

    def _anchored(self) -> bool:
        return all(self.anchors.get(a) in b.wanted for a, b in self.batches.items())

    def _anchor(self, address: Address, batch: Batch) -> None:
        """Hold a channel of a slot ``address`` owns, in ``batch`` (anew when
        the slot of its last one moved)."""
        anchor = self.anchors.get(address)
        if anchor is not None and anchor in batch.wanted:
            return
        anchor = redis_cluster.anchor_channel(
            lambda slot: self._map[slot] == address and slot not in self.orphans
        )
        self.anchors[address] = anchor
        batch.fix(anchor)

    def _start_master(self, address: Address, rejoin: bool) -> None:
        master = MasterListener(
            self.url, *address, self.batches[address], events=self.events,
            rejoin=rejoin, hooks=self.hooks, controls=self.controls, **self.kwargs,
        )  # fmt: skip
        self.masters[address] = master
        master.start()

    def _shares(self) -> dict[Address, set[str]]:
        """The channels held (or to be) on each master, anchors left out; the
        parked ones on the master that dropped them."""
        anchors = set(self.anchors.values())
        shares = {
            address: batch.wanted - anchors for address, batch in self.batches.items()
        }
        for channel in self.parked.wanted:
            address = self.orphans.get(_slot(channel), (None,))[0]
            if address is not None:
                shares.setdefault(address, set()).add(channel)
        return shares

    def _log_moves(self, moved: dict, why: str) -> None:
        count = sum(moved.values())
        self.hooks.count("cluster_map_changes")
        for _ in range(count):
            self.hooks.count("cluster_channels_moved")
        logger.warning(
            "Redis Cluster slot map changed (noticed: %s): %s; subscribing there, "
            "then clients resync what they may have missed",
            why,
            cluster_topology.describe(moved),
        )

    # What the masters' listeners tell ---------------------------------------

    def _suspect(self, why: str) -> None:
        self.watcher.suspect(why)

    def _moved_away(self, master: MasterListener, channel: str) -> None:
        """Redis unsubscribed ``master`` from ``channel``: its slot's channels
        are parked (unconfirmed, waited for) until a map read says where."""
        if self.masters.get(master.address) is not master:
            return  # a listener being replaced
        slot = _slot(channel)
        if slot not in self.orphans:
            self.orphans[slot] = (master.address, time.monotonic())
            batch = master.batch
            for name in sorted(batch.wanted):
                if _slot(name) != slot:
                    continue
                fixed, waiter = batch.release(name)
                if name == self.anchors.get(master.address):
                    del self.anchors[master.address]  # made anew on the map read
                    if waiter is not None:
                        waiter.set()
                else:
                    self.parked.adopt(name, fixed, waiter)
            logger.debug("Redis at %s unsubscribed us from slot %d", master, slot)
        self._changed()
        self.watcher.suspect(f"{master} unsubscribed channels whose slot moved")

    def _changed(self) -> None:
        """Tell ``coverage`` which buckets lack a live subscription, if that
        changed: their slot's master is not live, or the slot is orphaned."""
        uncovered = set(range(redis_cluster.BUCKETS))
        if self._map:
            uncovered = {
                number
                for number, slot in enumerate(self._bucket_slots)
                if slot in self.orphans
                or not getattr(self.masters.get(self._map[slot]), "live", False)
            }
        if uncovered != self.uncovered:
            self.uncovered = uncovered
            if self.coverage is not None:
                self.coverage(set(uncovered))


def _slot(channel: str) -> int:
    return key_slot(channel.encode())


class ClusterVersionBook(VersionBook):
    """``VersionBook`` with a horizon per bucket (see the module)."""

    def __init__(self, *args, **kwargs) -> None:
        self.horizons: list[int | None] = [None] * redis_cluster.BUCKETS
        # Per bucket, a horizon no unnoticed loss can have passed: the last
        # update received there, or the first baseline (see uncovered()).
        self.received: list[int | None] = [None] * redis_cluster.BUCKETS
        # Buckets with no live subscription now (ClusterListener.coverage).
        self.gaps: set[int] = set()
        self.interest: Interest | None = None  # the gateway's (set once made)
        super().__init__(*args, **kwargs)

    @property
    def horizon(self) -> tuple[int, ...] | None:
        """Every bucket's horizon (None: a bucket has none yet)."""
        if None in self.horizons:
            return None
        return tuple(self.horizons)

    @horizon.setter
    def horizon(self, value: int | None) -> None:
        self.horizons = [value] * redis_cluster.BUCKETS

    @staticmethod
    def older(first: Any, second: Any) -> Any:
        if None in (first, second):
            return None
        return tuple(map(min, first, second))

    def changed_since(self, snapshot: Snapshot, url: str, horizon: Any) -> bool:
        """Compared in each book with its bucket's horizon: an object URL with
        its own only, a collection with each (a resync more, never one less).

        This gateway hears only the URLs it holds: a bucket's horizon says
        nothing of a URL's changes before its channels were held. Those up to
        the lookup answering its first subscriber since were told then
        (``Interest.since``): no horizon below that baseline counts for it.
        """
        since = self.interest.since.get(url) if self.interest is not None else None
        if since is not None:
            horizon = tuple(max(h, since) for h in horizon)
        return snapshot.changed_in_a_book(url, horizon, self.ttl)

    def answered(self, url: str, baseline: int) -> None:
        if self.interest is not None:
            self.interest.answered(url, baseline)

    def saw(self, version: int | None) -> None:
        """Not by version alone: ``saw_update`` knows the bucket."""

    def saw_update(self, update: Update) -> None:
        version = update.version
        if version is not None:
            number = redis_cluster.bucket(update.url)
            for horizons in (self.horizons, self.received):
                seen = horizons[number]
                if seen is None or version > seen:
                    horizons[number] = version

    def saw_baseline(self, baseline: int) -> None:
        """Every book's ``:last`` reached ``baseline`` (``redis_cluster.lookup``):
        the horizon of each bucket subscribed now moves there."""
        for number, seen in enumerate(self.horizons):
            if number in self.gaps:
                continue  # what it misses now may be below the baseline
            if seen is None or baseline > seen:
                self.horizons[number] = baseline
            if self.received[number] is None:
                self.received[number] = baseline

    def uncovered(self, buckets: set[int]) -> None:
        """``buckets`` have no live subscription now (the others have one).

        A loss is noticed after it began (a slot migrated before Redis said so,
        a connection dead before its PING deadline): a baseline taken meanwhile
        may be past updates that never arrived. So a bucket entering a gap goes
        back to the last version that did arrive there (or its first baseline).
        """
        for number in buckets - self.gaps:
            self.horizons[number] = self.received[number]
        self.gaps = set(buckets)

    def _ask(self, urls: list[str]) -> Snapshot:
        self._asked = True
        client = side_client(self.redis_url)
        merged: Snapshot | None = None
        for start in range(0, max(len(urls), 1), CHUNK):
            chunk = urls[start : start + CHUNK]
            snapshot = redis_cluster.lookup(client, chunk, self.horizons)
            merged = snapshot if merged is None else merged.with_versions(snapshot)
        return merged


def dispatch_in_bucket(
    book: ClusterVersionBook, dispatch: Callable[[Update], int]
) -> Callable[[Update], int]:
    """The listeners' update hook: the bucket's horizon moves, then ``dispatch``."""

    def update(update: Update) -> int:
        book.saw_update(update)
        return dispatch(update)

    return update
