"""The gateway on a Redis Cluster (issue 24): a listener per master, a horizon
per bucket, and the slot map followed.

Sharded messages stay on the master owning their channel's slot, so the gateway
``SSUBSCRIBE``s on a connection to each master (one ``Listener`` greenlet
each, with its liveness, backoff and restarts) to the channels whose slots it
owns: every model in every bucket (``pushy.redis_cluster``), and the control
channels. ``SSUBSCRIBE`` takes channels of one slot only: one call per channel.

The versions of the buckets come from different books (masters, clocks), so
the gateway keeps a horizon per bucket: a book is told only its own bucket's
(a higher one from another book would look like this one going back). After
an outage the clients' URLs are compared with each book's horizon (a resync
more, never one less).

A failover or a resharding moves channels to another master
(pushy/gateway/cluster_topology.py): the listeners whose share changed are
made anew on the map read, and once subscribed the clients resync as after an
outage. Meanwhile the buckets without a subscription are *uncovered*: the book
takes back their horizons to the last update received there (a loss may have
begun before it was noticed) and no lookup moves them until they are covered.
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
from pushy.gateway.cluster_topology import Address, Shares, SlotMapWatcher
from pushy.gateway.listener import Backoff, Hooks, Listener
from pushy.gateway.side_redis import side_client
from pushy.gateway.versions import CHUNK, VersionBook
from pushy.messages import Update
from pushy.redis_clients import redacted
from pushy.versions import Snapshot

logger = logging.getLogger(__name__)

# How long one SSUBSCRIBE confirmation may take.
CONFIRM_TIMEOUT = 2.0
# Seconds a channel Redis unsubscribed us from is not subscribed again on the
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
    """One master's sharded subscription (a ``Listener`` in every other way).

    ``rejoin``: made to take channels over after a change of the slot map,
    whose updates were missed meanwhile: clients resync once it subscribed.
    """

    message_type = "smessage"

    def __init__(
        self,
        url: str,
        host: str,
        port: int,
        channels: list[str],
        events: MasterEvents | None = None,
        rejoin: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(url, f"{len(channels)} channels", **kwargs)
        self.host, self.port, self.channels = host, port, channels
        self.events = events
        self._resync_due = rejoin

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
        for channel in self.channels:  # one slot per call (CROSSSLOT otherwise)
            pubsub.ssubscribe(channel)
        confirmed = 0
        deadline = time.monotonic() + CONFIRM_TIMEOUT
        while confirmed < len(self.channels):
            left = deadline - time.monotonic()
            message = pubsub.get_message(timeout=max(left, 0.0))
            if message is not None and message["type"] == "ssubscribe":
                confirmed += 1
            elif message is None and left <= 0:
                raise redis.TimeoutError(f"no SSUBSCRIBE confirmation from {self}")
        self._joined()

    # What the cluster listener learns (cluster_topology.py) ------------------

    def _joined(self) -> None:
        super()._joined()
        if self.events is not None:
            self.events.changed()

    def _down(self) -> None:
        if self.events is not None:
            self.events.changed()

    def _lost(self, error: Exception) -> None:
        super()._lost(error)
        if self.events is not None and not self._stopping:
            self.events.suspect(f"{self}: {error}")

    def _notice(self, pubsub: redis.client.PubSub, message: dict) -> None:
        """An SUNSUBSCRIBE we did not ask for: the channel's slot left this node."""
        channel = message["channel"]
        if message["type"] != "sunsubscribe" or channel not in pubsub.shard_channels:
            return
        del pubsub.shard_channels[channel]  # not subscribed again on a reconnect
        name = channel.decode("utf-8", "replace")
        if name in self.channels:
            self.channels.remove(name)
        if self.events is not None:
            self.events.moved_away(self, name)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class ClusterListener:
    """The listeners of every master, seen as one (``Listener``'s interface).

    ``coverage(buckets)`` is told, at every change, which buckets have no live
    subscription (``ClusterVersionBook.uncovered``).
    """

    def __init__(
        self,
        url: str,
        labels: list[str],
        hooks: Hooks,
        controls: Mapping[str, Callable[[bytes], object]],
        coverage: Callable[[set[int]], object] | None = None,
        **kwargs,
    ) -> None:
        self.url = url
        self.channels = redis_cluster.channels(labels) + list(controls)
        self.pattern = f"{len(self.channels)} sharded channels"
        self.hooks = hooks
        self.controls = controls
        self.kwargs = kwargs
        self.coverage = coverage
        self.masters: dict[Address, MasterListener] = {}
        # Channels Redis unsubscribed us from (their slot left the node), not
        # subscribed elsewhere yet: the master that dropped them, and when.
        self.orphans: dict[str, tuple[Address, float]] = {}
        self.uncovered: set[int] = set(range(redis_cluster.BUCKETS))
        self.events = MasterEvents(self._changed, self._suspect, self._moved_away)
        self.watcher = SlotMapWatcher(self._read, self.follow, lambda: self.live)
        self.first_attempt = gevent.event.Event()
        self._greenlet: gevent.Greenlet | None = None
        self._slot_buckets = {
            key_slot(redis_cluster.tag(n).encode()): n
            for n in range(redis_cluster.BUCKETS)
        }

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
            f"{len(m.channels)} channels on {m} not subscribed"
            for m in sorted(self.masters.values(), key=str)
            if not m.live
        ]
        if self.orphans:
            parts.append(
                f"{len(self.orphans)} channels moved to another master "
                "(following the slot map)"
            )
        return "; ".join(parts)

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
                shares = self._read()
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
        self.follow(shares)
        for master in list(self.masters.values()):
            master.first_attempt.wait()
        self.first_attempt.set()
        self.watcher.run()

    def _read(self) -> Shares:
        return cluster_topology.read_shares(self.url, self.channels)

    # Following the slot map -------------------------------------------------

    def follow(self, shares: Shares, why: str | None = None) -> bool:
        """Subscribe each channel on its owner in ``shares``; whether any moved.

        A listener keeps its connection when it only lost channels (Redis
        unsubscribed it already); one that gains channels, or whose master is
        new, is made anew and resyncs the clients once subscribed (``why`` is
        None at start: nothing was missed then).
        """
        shares = self._believed(shares)
        current = {a: tuple(m.channels) for a, m in self.masters.items()}
        if shares == current and not self.orphans:
            return False
        before = {a: [*m.channels] for a, m in self.masters.items()}
        for channel, (address, _) in self.orphans.items():
            before.setdefault(address, []).append(channel)
        moved = cluster_topology.moves(before, shares)
        for address in set(self.masters) - set(shares):
            self.masters.pop(address).stop()
        for address, channels in shares.items():
            self._place(address, list(channels), rejoin=why is not None)
        self.orphans = {c: o for c, o in self.orphans.items() if c not in self._owner}
        if why is not None and moved:
            self._log_moves(moved, why)
        self._changed()
        return bool(moved)

    @property
    def _owner(self) -> dict[str, Address]:
        return {c: a for a, m in self.masters.items() for c in m.channels}

    def _believed(self, shares: Shares) -> Shares:
        """``shares`` without the orphans it still gives to the master that
        dropped them, for ORPHAN_PATIENCE seconds (the node that answered
        ``CLUSTER SLOTS`` may not have heard of the move yet)."""
        shares = {address: found for address, found in shares.items() if found}
        now = time.monotonic()
        stale = {
            channel
            for channel, (address, since) in self.orphans.items()
            if now - since < ORPHAN_PATIENCE and channel in shares.get(address, ())
        }
        if not stale:
            return shares
        return {
            address: tuple(c for c in channels if c not in stale)
            for address, channels in shares.items()
        }

    def _place(self, address: Address, channels: list[str], rejoin: bool) -> None:
        """``channels`` subscribed on ``address``: kept, narrowed, or made anew."""
        master = self.masters.get(address)
        if master is not None and master.channels == channels:
            return
        if master is not None and set(channels) <= set(master.channels):
            master.channels = channels  # the rest were unsubscribed by Redis
            master.pattern = f"{len(channels)} channels"
            return
        if master is not None:
            master.stop()
        master = MasterListener(
            self.url, *address, channels, events=self.events, rejoin=rejoin,
            hooks=self.hooks, controls=self.controls, **self.kwargs,
        )  # fmt: skip
        self.masters[address] = master
        master.start()

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
        if self.masters.get(master.address) is not master:
            return  # a listener being replaced
        self.orphans[channel] = (master.address, time.monotonic())
        logger.debug("Redis at %s unsubscribed the gateway from %s", master, channel)
        self._changed()
        self.watcher.suspect(f"{master} unsubscribed channels whose slot moved")

    def _changed(self) -> None:
        """Tell ``coverage`` which buckets lack a live subscription, if that changed."""
        planned: set[str] = set()
        missing = set(self.orphans)
        for master in self.masters.values():
            planned.update(master.channels)
            if not master.live:
                missing.update(master.channels)
        missing.update(set(self.channels) - planned)
        uncovered = {self._bucket(c) for c in missing} - {None}
        if uncovered != self.uncovered:
            self.uncovered = uncovered
            if self.coverage is not None:
                self.coverage(set(uncovered))

    def _bucket(self, channel: str) -> int | None:
        return self._slot_buckets.get(key_slot(channel.encode()))


class ClusterVersionBook(VersionBook):
    """``VersionBook`` with a horizon per bucket (see the module)."""

    def __init__(self, *args, **kwargs) -> None:
        self.horizons: list[int | None] = [None] * redis_cluster.BUCKETS
        # Per bucket, a horizon no unnoticed loss can have passed: the last
        # update received there, or the first baseline (see uncovered()).
        self.received: list[int | None] = [None] * redis_cluster.BUCKETS
        # Buckets with no live subscription now (ClusterListener.coverage).
        self.gaps: set[int] = set()
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
        its own only, a collection with each (a resync more, never one less)."""
        return snapshot.changed_in_a_book(url, horizon, self.ttl)

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
