"""The gateway on a Redis Cluster (issue 24): a listener per master, a horizon
per bucket.

Sharded messages stay on the master owning their channel's slot, so the gateway
``SSUBSCRIBE``s on a connection to each master (one ``Listener`` greenlet
each, with its liveness, backoff and restarts) to the channels whose slots it
owns: those its clients' URLs need (``pushy.gateway.interest``: the listener
sends that master's batch at each turn), the control channels, and an anchor
channel nobody publishes to (a subscription is never empty).

The versions of the buckets come from different books (masters, clocks), so
the gateway keeps a horizon per bucket: a book is told only its own bucket's
(a higher one from another book would look like this one going back). After
an outage the clients' URLs are compared with the oldest horizon (a resync
more, never one less). The slot map is read when the listeners start; a
failover or a resharding is not followed (docs/deployment.md, "Redis Cluster").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import gevent
import gevent.event
import redis
from redis.crc import key_slot

from pushy import redis_cluster
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


class MasterListener(Listener):
    """One master's sharded subscription (a ``Listener`` in every other way),
    holding the channels of its ``Batch`` (``pushy.gateway.interest``)."""

    message_type = "smessage"

    def __init__(self, url: str, host: str, port: int, batch: Batch, **kwargs) -> None:
        super().__init__(url, f"{host}:{port}", **kwargs)
        self.host, self.port, self.batch = host, port, batch
        # The body just handled: an update published to its object's and its
        # collection's channel comes twice in a row when both are held.
        self._last_body: bytes | None = None
        self._pubsub: redis.client.PubSub | None = None  # while pumping

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

    def _lost(self, error: Exception) -> None:
        self.batch.lost()
        super()._lost(error)

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

    def _other(self, message: dict) -> None:
        if message["type"] == "ssubscribe":
            self.batch.heard(message["channel"].decode())

    def _handle(self, channel: bytes, body: bytes) -> None:
        if body == self._last_body:
            self._last_body = None
            return
        self._last_body = body
        super()._handle(channel, body)

    def stop(self) -> None:
        super().stop()
        self.batch.lost()

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class ClusterListener:
    """The listeners of every master, seen as one (``Listener``'s interface).

    Which master holds a channel is read from the slot map once (``route``);
    until it is read, the interest only counts what it will need.
    """

    def __init__(
        self,
        url: str,
        hooks: Hooks,
        controls: Mapping[str, Callable[[bytes], object]],
        **kwargs,
    ) -> None:
        self.url = url
        self.pattern = "sharded channels by interest"
        self.hooks = hooks
        self.controls = controls
        self.kwargs = kwargs
        self.masters: list[MasterListener] = []
        self.interest = Interest(redis_cluster.interest, self.route)
        self.first_attempt = gevent.event.Event()
        self._greenlet: gevent.Greenlet | None = None
        self._owners: list[Batch] = []  # each slot's master's batch
        self._sending: gevent.Greenlet | None = None

    @property
    def live(self) -> bool:
        return bool(self.masters) and all(m.live for m in self.masters)

    def route(self, channel: str) -> Batch | None:
        """The batch of the master owning ``channel``'s slot (None: not read)."""
        if not self._owners:
            return None
        return self._owners[key_slot(channel.encode())]

    def start(self) -> None:
        self._greenlet = gevent.spawn(self._start)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill()
        for master in self.masters:
            master.stop()

    def _start(self) -> None:
        """Read the slot map (until the cluster answers); a listener per master."""
        backoff = Backoff()
        while True:
            try:
                owners = self._slot_owners()
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
        batches = {}
        for address in sorted(set(owners)):
            fixed = [c for c in self.controls if owners[_slot(c)] == address]
            fixed.append(redis_cluster.anchor_channel(_owned(owners, address)))
            batches[address] = batch = Batch(fixed, self._send_soon)
            host, port = address
            master = MasterListener(
                self.url, host, port, batch,
                hooks=self.hooks, controls=self.controls, **self.kwargs,
            )  # fmt: skip
            self.masters.append(master)
        self._owners = [batches[address] for address in owners]
        for channel in self.interest.needed():  # wanted before the map was read
            self._owners[_slot(channel)].add(channel)
        for master in self.masters:
            master.start()
        for master in self.masters:
            master.first_attempt.wait()
        self.first_attempt.set()

    def _send_soon(self) -> None:
        """Commands are due: every master's go out together, once this turn's
        subscribes and unsubscribes are in (one greenlet per loop turn)."""
        if self._sending is None:
            self._sending = gevent.spawn(self._send_due)

    def _send_due(self) -> None:
        self._sending = None
        for master in self.masters:
            master.send_due()

    def _slot_owners(self) -> list[tuple[str, int]]:
        """Each slot's master, as (host, port)."""
        cluster = side_client(self.url)
        with redis_cluster.redis_errors():
            nodes = cluster.nodes_manager
            owners = []
            for slot in range(redis_cluster.SLOTS):
                node = nodes.get_node_from_slot(slot)
                owners.append((node.host, node.port))
        return owners


def _owned(owners: list, address: tuple) -> Callable[[int], bool]:
    return lambda slot: owners[slot] == address


def _slot(channel: str) -> int:
    return key_slot(channel.encode())


class ClusterVersionBook(VersionBook):
    """``VersionBook`` with a horizon per bucket (see the module)."""

    def __init__(self, *args, **kwargs) -> None:
        self.horizons: list[int | None] = [None] * redis_cluster.BUCKETS
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
            seen = self.horizons[number]
            if seen is None or version > seen:
                self.horizons[number] = version

    def saw_baseline(self, baseline: int) -> None:
        """Every book's ``:last`` reached ``baseline`` (``redis_cluster.lookup``)."""
        self.horizons = [
            baseline if h is None or baseline > h else h for h in self.horizons
        ]

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
