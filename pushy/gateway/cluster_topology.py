"""Following a Redis Cluster's slot map at the gateway: failovers, resharding.

The gateway's sharded subscriptions (pushy/gateway/cluster_listener.py) sit on
the masters that owned their channels' slots when they were made. A master
that dies is replaced by one of its replicas; a migrated slot moves to another
master. Either way some channels are no longer subscribed where their messages
are now published. The listeners notice (their connection is lost, SSUBSCRIBE
is answered MOVED, or Redis 7 sends SUNSUBSCRIBE when a slot leaves the node)
and tell the ``SlotMapWatcher``, which reads the slot map again, with backoff
until every listener is subscribed (a dead master's slots get a new owner only
once the cluster has promoted a replica, seconds later), and hands each map
read to the cluster listener, which moves the channels whose owner changed.
It also reads the map every ``MAP_CHECK_INTERVAL`` seconds, for a change no
listener noticed (a replica promoted by hand: the old master, now a replica of
the new one, still delivers the shard's messages, but would not after a later
failover).
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Iterable, Mapping

import gevent
import gevent.event
import redis

from pushy import redis_cluster
from pushy.gateway.listener import Backoff
from pushy.gateway.side_redis import side_client

logger = logging.getLogger(__name__)

# A master's address; each slot's master (a slot map); the channels on each.
Address = tuple[str, int]
SlotMap = list[Address]
Shares = dict[Address, tuple[str, ...]]

# Seconds between two readings of the slot map when nothing suggests a change.
MAP_CHECK_INTERVAL = 10.0
# Longest wait between two readings while following a change: a promotion
# takes the cluster's node timeout and an election (seconds), so the new owner
# is found within this of being known.
FOLLOW_BACKOFF = 1.0


def read_map(url: str) -> SlotMap:
    """Each slot's master, by a fresh reading of the slot map.

    The gateway's side client reads it (``CLUSTER SLOTS`` on a node that
    answers), so its version lookups follow the change too. ConnectionError
    when no node answers or the slots are not all covered.
    """
    cluster = side_client(url)
    with redis_cluster.redis_errors():
        nodes = cluster.nodes_manager
        nodes.initialize()
        found = []
        for slot in range(redis_cluster.SLOTS):
            node = nodes.get_node_from_slot(slot)
            found.append((node.host, node.port))
    return found


def owners(shares: Mapping[Address, Iterable[str]]) -> dict[str, Address]:
    return {channel: address for address, found in shares.items() for channel in found}


def moves(
    old: Mapping[Address, Iterable[str]], new: Mapping[Address, Iterable[str]]
) -> dict[tuple[Address | None, Address], int]:
    """How many channels went from which master (None: none had them) to which."""
    before = owners(old)
    counted: collections.Counter[tuple[Address | None, Address]] = collections.Counter()
    for channel, address in owners(new).items():
        if before.get(channel) != address:
            counted[(before.get(channel), address)] += 1
    return dict(counted)


def describe(moved: dict[tuple[Address | None, Address], int]) -> str:
    """``12 channels from 10.0.0.1:7000 to 10.0.0.4:7003; ...`` for the log."""
    return "; ".join(
        f"{n} channel{'' if n == 1 else 's'} from {_name(old)} to {_name(new)}"
        for (old, new), n in sorted(moved.items(), key=lambda m: (-m[1], str(m[0])))
    )


def _name(address: Address | None) -> str:
    return "nowhere" if address is None else f"{address[0]}:{address[1]}"


class SlotMapWatcher:
    """Reads the slot map when told it may have changed, until all is settled.

    ``read()`` returns the current slot map (or raises ``RedisError``/``OSError``),
    ``follow(slot_map, why)`` moves the subscriptions to it, ``settled()`` says
    whether every channel is subscribed on a live connection. ``run()`` is the
    loop (in the cluster listener's greenlet); ``suspect(why)`` wakes it.
    """

    def __init__(
        self,
        read: Callable[[], SlotMap],
        follow: Callable[[SlotMap, str], object],
        settled: Callable[[], bool],
        interval: float = MAP_CHECK_INTERVAL,
    ) -> None:
        self.read = read
        self.follow = follow
        self.settled = settled
        self.interval = interval
        self._wake = gevent.event.Event()
        self._why: str | None = None

    def suspect(self, why: str) -> None:
        """Something suggests the map changed (the first reason is kept)."""
        if self._why is None:
            self._why = why
        self._wake.set()

    def run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._settle()

    def _settle(self) -> None:
        """Read and follow the map until every channel is subscribed again."""
        backoff = Backoff(cap=FOLLOW_BACKOFF)
        why = "a periodic check"
        while True:
            self._wake.clear()
            if self._why is not None:
                why, self._why = self._why, None
            try:
                slot_map = self.read()
            except (redis.RedisError, OSError) as e:
                logger.debug("cannot read the Redis Cluster's slot map: %s", e)
            else:
                self.follow(slot_map, why)
            if self.settled():
                return
            gevent.sleep(backoff.next())
