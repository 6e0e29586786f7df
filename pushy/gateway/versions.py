"""Versions at the gateway: subscribe-with-version, and per-URL resyncs.

A client that sends ``version`` with a subscribe (protocol addition, see
docs/protocol.md "Versions") is told at once whether the URL changed since:
``subscribed`` carries the version it now holds, and a ``resync`` of that URL
follows only when it changed, or when that cannot be known (versions lost or
expired). After a Redis outage such clients get a resync of the URLs that
changed since the last update this gateway received (its horizon), not of all.

Questions from every connection that arrive within one loop turn share one Redis
round trip (``LOOKUP_SCRIPT``). A connection's reader waits for its answer, as it
waits for authorization, so answers keep the order of the requests.

Every lookup also tells whether Redis still holds what the versions depend on:
the script starts a new epoch when the Redis process changed (a restart, a
failover) or went back behind this gateway's horizon, and ``on_epoch`` is called
when the floor moved, so that connected clients resync as after an outage. The
gateway asks once every ``REDIS_HEALTH_INTERVAL`` even when no client does
(``probe()``): a Redis that refuses the lookup's write (out of memory) or does
not answer it (paused, hung) is the ``problem`` /health reports.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import gevent
import gevent.event
import redis

from pushy import versions
from pushy.gateway import replies
from pushy.gateway.side_redis import side_client
from pushy.logs import Throttled
from pushy.object_urls import without_query
from pushy.redis_clients import out_of_memory
from pushy.refusals import refusal_counts
from pushy.versions import Snapshot

logger = logging.getLogger(__name__)

TIMEOUT = 2.0
# URLs per Redis script call (a reconnecting page sends up to MAX_SUBSCRIPTIONS).
CHUNK = 1000


_Question = tuple[list[str], gevent.event.AsyncResult, bool]
# The updates a client missed after a version, as frames; None: resync instead.
Replayer = Callable[[int], list[bytes] | None] | None


class VersionBook:
    """The gateway's questions about versions, batched, and its horizon."""

    def __init__(
        self, redis_url: str, ttl: float, on_epoch: Callable[[], object] = lambda: None
    ) -> None:
        self.redis_url = redis_url
        self.ttl = ttl
        self.on_epoch = on_epoch
        # The floor of the epoch in force, as the last answer said.
        self.floor: int | None = None
        # Why versions cannot be read now (None: they can): /health says it.
        self.problem: str | None = None
        # Set when Redis refused a write for lack of memory, until a write works.
        self._oom_floor: int | None = None
        # A resync request came with its new epoch (LOSE_SCRIPT): the clients
        # were told already, so the next floor seen is adopted quietly.
        self._move_announced = False
        # Every update with a version up to this one has reached this gateway.
        self.horizon: int | None = None
        # Connections that sent a version: they get per-URL resyncs.
        self.clients: weakref.WeakSet = weakref.WeakSet()
        # (urls, result, whether the asker resyncs every client from it)
        self._pending: list[_Question] = []
        self._wake = gevent.event.Event()
        self._worker: gevent.Greenlet | None = None
        self._asked = False  # whether a lookup went to Redis yet
        self._log = Throttled(logger)

    def saw(self, version: int | None) -> None:
        """An update with ``version`` reached this gateway."""
        if version is not None and (self.horizon is None or version > self.horizon):
            self.horizon = version

    def saw_baseline(self, baseline: int) -> None:
        """Every update up to ``baseline`` (a lookup's) has reached this gateway."""
        self.saw(baseline)

    def lookup(self, urls: list[str], resyncs: bool = False) -> Snapshot | None:
        """The versions of ``urls`` now; None when Redis cannot say (in time).

        ``resyncs``: the asker resyncs every client from this answer (after an
        outage), so a new epoch it shows needs no resync of its own.
        """
        result = gevent.event.AsyncResult()
        self._pending.append((urls, result, resyncs))
        if self._worker is None or self._worker.dead:
            self._worker = gevent.spawn(self._run)
        self._wake.set()
        try:
            return result.get(timeout=TIMEOUT)
        except gevent.Timeout:
            return None

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if batch:
                self._answer(batch)

    def _answer(self, batch: list[_Question]) -> None:
        urls = list(dict.fromkeys(url for wanted, _, _ in batch for url in wanted))
        try:
            snapshot = self._ask(urls)
        except (redis.RedisError, ValueError) as e:
            self._failed(e)
            snapshot = None
        else:
            self._answered(snapshot, any(resyncs for _, _, resyncs in batch))
        for _, result, _ in batch:
            result.set(snapshot)

    def _failed(self, error: Exception) -> None:
        if out_of_memory(error):
            self.problem = "redis_out_of_memory"
            if self._oom_floor is None:
                self._oom_floor = self.floor
                logger.error(
                    "Redis refuses writes (out of memory): versions cannot move, "
                    "so returning pages will be resynced once it accepts them"
                )
        elif isinstance(error, redis.TimeoutError):
            self.problem = "redis_not_answering"
        elif isinstance(error, redis.ConnectionError):
            self.problem = "redis_unreachable"
        # Other refusals (an ACL without scripts) stop versions, not delivery.
        self._log.log(logging.WARNING, "cannot read versions from Redis: %s", error)

    def _answered(self, snapshot: Snapshot, resyncing: bool) -> None:
        self.problem = None
        moved = self.floor is not None and snapshot.floor != self.floor
        if moved and (self._move_announced or resyncing):
            moved = False
        self._move_announced = False
        self.floor = snapshot.floor
        if self._oom_floor is not None:
            # Writes work again. Publishers that died meanwhile could not move
            # the versions of what they published without them: a new epoch.
            expected, self._oom_floor = self._oom_floor, None
            self._lose(expected)
        if moved:
            logger.warning(
                "Redis started a new version epoch (restarted, failed over, went "
                "back or lost changes): clients resync what they cannot vouch for"
            )
            self.on_epoch()

    def _lose(self, expected: int | None) -> None:
        try:
            # Connected clients missed nothing (Redis still took PUBLISH): the
            # new floor is for pages that come back, not a reason to resync.
            self.floor = versions.lose(side_client(self.redis_url), expected)
        except redis.RedisError as e:
            self._oom_floor = expected  # try again with the next answer
            self._log.log(logging.WARNING, "cannot start a version epoch: %s", e)

    def resync_announced(self) -> None:
        """A resync request reached every client; adopt its new epoch quietly.

        ``LOSE_SCRIPT`` moves the floor and publishes the request in one step,
        so the floor has moved by now; without this, the next lookup would
        resync the same clients a second time.
        """
        self._move_announced = True
        self.lookup([])

    def refusals(self) -> dict[str, int] | None:
        """Updates refused at publish, site-wide (``pushy.refusals``); None: unknown."""
        if not self._asked:  # no connection made yet: not worth one for /stats
            return None
        try:
            return refusal_counts(side_client(self.redis_url))
        except (redis.RedisError, ValueError):
            return None

    def probe(self) -> None:
        """Ask Redis once (a lookup of no URL): keeps ``problem`` and the floor true."""
        self.lookup([])

    def _ask(self, urls: list[str]) -> Snapshot:
        self._asked = True
        client = side_client(self.redis_url)
        merged: Snapshot | None = None
        for start in range(0, max(len(urls), 1), CHUNK):
            snapshot = versions.lookup(
                client, urls[start : start + CHUNK], self.horizon
            )
            merged = snapshot if merged is None else merged.with_versions(snapshot)
        return merged

    # Answers -------------------------------------------------------------

    def subscribed(
        self, connection: Any, url: str, seen: int | None, replay: Replayer = None
    ) -> tuple[list[bytes], bool]:
        """The frames answering a subscribe that carried ``version`` (``seen``),
        and whether the client holds every update of ``url`` after ``seen``
        once they are sent (no resync, nothing unknown).

        ``subscribed`` with the version the client now holds, then, if ``url``
        changed after ``seen``, the updates missed (``replay(seen)``, when it
        can tell them: replay.py) or a resync of ``url``. Without an answer
        from Redis, ``subscribed`` has no version: the client resyncs, as
        protocol v1 does.
        """
        self.clients.add(connection)
        key = without_query(url)  # a filtered list has its collection's version
        snapshot = self.lookup([key])
        if snapshot is None:
            return [replies.subscribed(url)], False
        self.answered(key, snapshot.baseline)
        frames = [replies.subscribed(url, snapshot.baseline)]
        if seen is None or not snapshot.changed_since(key, seen, self.ttl):
            return frames, seen is not None
        missed = None if replay is None else replay(seen)
        if missed is None:
            return [*frames, replies.resync(url, snapshot.baseline)], False
        return frames + missed, True

    def answered(self, url: str, baseline: int) -> None:
        """A subscribe to ``url`` was answered with ``baseline`` (a cluster's
        book keeps it: ``ClusterVersionBook``)."""

    def after_outage(self, hub: Any, horizon: int | None) -> Iterable[Any]:
        """Resync, per URL, what changed since ``horizon``; the clients left over.

        Called once the Redis subscription is back, with the horizon as it was
        then (every update up to it reached this gateway). Returns the
        connections that must get a plain ``{"type": "resync"}`` instead:
        those that never sent a version, or all of them when the versions
        cannot be read.
        """
        versioned = [c for c in hub.connections if c in self.clients]
        others = [c for c in hub.connections if c not in self.clients]
        urls = sorted({url for c in versioned for url in c.urls})
        snapshot = self.lookup(sorted({without_query(u) for u in urls}), resyncs=True)
        if snapshot is None or horizon is None:
            if snapshot is not None:  # no update and no lookup yet: nothing to compare
                self.saw_baseline(snapshot.baseline)
            _log_resync(0, 0, len(others) + len(versioned))
            return others + versioned
        told: set[Any] = set()
        changed = 0
        for url in urls:
            if self.changed_since(snapshot, without_query(url), horizon):
                changed += 1
                frame = replies.resync(url, snapshot.baseline)
                for connection in list(hub.by_url.get(url, ())):
                    if connection in self.clients:
                        connection.send(frame)
                        told.add(connection)
        self.saw_baseline(snapshot.baseline)
        _log_resync(changed, len(told), len(others))
        return others

    def changed_since(self, snapshot: Snapshot, url: str, horizon: Any) -> bool:
        """Whether ``url`` may have changed after ``horizon`` (see after_outage)."""
        return snapshot.changed_since(url, horizon, self.ttl)

    @staticmethod
    def older(first: Any, second: Any) -> Any:
        """The older of two horizons (None: none, older than any)."""
        return None if None in (first, second) else min(first, second)

    def start_horizon(self) -> None:
        """After the first subscription: updates from here on will arrive."""
        snapshot = self.lookup([])
        if snapshot is not None:
            self.saw_baseline(snapshot.baseline)


def _log_resync(urls: int, versioned: int, everything: int) -> None:
    """What a resync after an outage (or a new epoch) told the clients."""
    logger.info(
        "resync: %d URL%s changed, resynced on %d client%s that sent versions; "
        "%d client%s told to reload everything",
        urls, "" if urls == 1 else "s", versioned, "" if versioned == 1 else "s",
        everything, "" if everything == 1 else "s",
    )  # fmt: skip
