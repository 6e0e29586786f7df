"""The gateway on a Redis Cluster (issue 24): a listener per master, a horizon
per bucket.

Sharded messages stay on the master owning their channel's slot, so the gateway
``SSUBSCRIBE``s on a connection to each master (one ``Listener`` greenlet
each, with its liveness, backoff and restarts) to the channels whose slots it
owns: every model in every bucket (``pushy.redis_cluster``), and the control
channels. ``SSUBSCRIBE`` takes channels of one slot only: one call per channel.

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

from pushy import redis_cluster
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
    """One master's sharded subscription (a ``Listener`` in every other way)."""

    message_type = "smessage"

    def __init__(
        self, url: str, host: str, port: int, channels: list[str], **kwargs
    ) -> None:
        super().__init__(url, f"{len(channels)} channels", **kwargs)
        self.host, self.port, self.channels = host, port, channels

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

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class ClusterListener:
    """The listeners of every master, seen as one (``Listener``'s interface)."""

    def __init__(
        self,
        url: str,
        labels: list[str],
        hooks: Hooks,
        controls: Mapping[str, Callable[[bytes], object]],
        **kwargs,
    ) -> None:
        self.url = url
        self.channels = redis_cluster.channels(labels) + list(controls)
        self.pattern = f"{len(self.channels)} sharded channels"
        self.hooks = hooks
        self.controls = controls
        self.kwargs = kwargs
        self.masters: list[MasterListener] = []
        self.first_attempt = gevent.event.Event()
        self._greenlet: gevent.Greenlet | None = None

    @property
    def live(self) -> bool:
        return bool(self.masters) and all(m.live for m in self.masters)

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
                shares = self._shares()
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
        for (host, port), channels in sorted(shares.items()):
            master = MasterListener(
                self.url, host, port, channels,
                hooks=self.hooks, controls=self.controls, **self.kwargs,
            )  # fmt: skip
            self.masters.append(master)
            master.start()
        for master in self.masters:
            master.first_attempt.wait()
        self.first_attempt.set()

    def _shares(self) -> dict[tuple[str, int], list[str]]:
        """The channels each master owns."""
        cluster = side_client(self.url)
        shares: dict[tuple[str, int], list[str]] = {}
        with redis_cluster.redis_errors():
            for channel in self.channels:
                node = cluster.get_node_from_key(channel)
                shares.setdefault((node.host, node.port), []).append(channel)
        return shares


class ClusterVersionBook(VersionBook):
    """``VersionBook`` with a horizon per bucket (see the module)."""

    def __init__(self, *args, **kwargs) -> None:
        self.horizons: list[int | None] = [None] * redis_cluster.BUCKETS
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
