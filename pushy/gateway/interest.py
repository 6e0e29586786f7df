"""Interest-based subscription on a Redis Cluster (issue 24, item 3).

A gateway subscribes only to the shard channels its clients need
(``redis_cluster.interest(url)``: the object's channel, and its collection's in
every bucket), so an update reaches only the gateways with a subscriber of its
object or collection.

- ``Interest`` counts, per channel, the subscribed URLs needing it (the hub
  tells it of a URL's first subscriber of each kind and of its last: one
  that said the URL is an object needs its channel only, any other all 13;
  both kinds together need the union), and routes each
  channel to the ``Batch`` of the master owning its slot. A channel no URL
  needs any more stays subscribed for ``grace`` seconds (a page reloading
  subscribes again at once: no churn).
- ``Batch`` is one master's share: the channels it should hold, and the
  SSUBSCRIBEs and SUNSUBSCRIBEs not yet sent, sent together once per loop turn
  for every master (one call per slot, as SSUBSCRIBE requires, all written
  before any answer is read) and confirmed by the answers its listener reads.
- ``ready(url)`` waits until the URL's channels are confirmed: the gateway
  answers a subscribe (and looks its version up) only then, so no update
  published after the answer can miss this gateway.
- When the slot map changes (``cluster_listener``: a failover, a migrated
  slot) a channel leaves its old master's batch (``release``: Redis dropped it
  already, or the master is gone) for the new owner's (``adopt``), its waiters
  with it: a subscribe waits for the new owner's confirmation. Until the new
  owner is known the channel is *parked* in a batch no listener sends.
"""

from __future__ import annotations

import collections
import itertools
import time
from collections.abc import Callable, Iterable

import gevent
import gevent.event
from redis.crc import key_slot

from pushy.object_urls import without_query

# Seconds a channel no URL needs any more stays subscribed.
GRACE = 2.0


class Batch:
    """One master's channels: wanted, confirmed, and the commands not yet sent."""

    def __init__(
        self,
        fixed: Iterable[str] = (),
        notify: Callable[[], object] = lambda: None,
        parked: bool = False,
    ) -> None:
        self.fixed = set(fixed)  # always held (control channels, the anchor)
        self.wanted: set[str] = set(self.fixed)
        self.confirmed: set[str] = set()
        self.to_add: set[str] = set()
        self.to_remove: set[str] = set()
        # SUNSUBSCRIBEs sent, not yet answered: an answer for any other channel
        # is Redis' own (its slot left the node).
        self.unsubscribing: collections.Counter[str] = collections.Counter()
        # No listener: channels waiting for their slot's new owner to be known
        # (their waiters wait on, for that owner's confirmation).
        self.parked = parked
        self.waiters: dict[str, gevent.event.Event] = {}
        self.live = False  # the listener holds its subscription
        # A confirmation did not come in time: the listener starts over.
        self.stuck = False
        # Called when commands are due: schedules their sending (once per turn).
        self.notify = notify

    # What the Interest asks ------------------------------------------------

    def add(self, channel: str) -> None:
        self.wanted.add(channel)
        self.to_remove.discard(channel)
        if channel not in self.confirmed:
            self.to_add.add(channel)
            self.notify()

    def remove(self, channel: str) -> None:
        if channel in self.fixed:
            return
        self.wanted.discard(channel)
        self.to_add.discard(channel)
        if channel in self.confirmed:
            self.to_remove.add(channel)
            self.notify()

    def fix(self, channel: str) -> None:
        """Hold ``channel`` always (a control channel, the anchor)."""
        self.fixed.add(channel)
        self.add(channel)

    def wait(self, channel: str, timeout: float) -> bool:
        """Whether ``channel`` is confirmed within ``timeout`` (at once when the
        listener is down: its resubscription resyncs every client)."""
        if channel in self.confirmed or not (self.live or self.parked):
            return True
        event = self.waiters.get(channel)
        if event is None:
            event = self.waiters[channel] = gevent.event.Event()
        if event.wait(timeout) or not (self.live or self.parked):
            return True
        if self.parked or channel not in self.wanted:
            return False  # moved on: its new owner's listener resyncs
        self.stuck = True  # the listener starts over (and resyncs)
        self.notify()
        return False

    def release(self, channel: str) -> tuple[bool, gevent.event.Event | None]:
        """``channel`` leaves this master (its slot moved: Redis dropped it, or
        the master is gone): forgotten with no command. Whether it was fixed,
        and its waiter (handed to the new owner's batch, ``adopt``)."""
        fixed = channel in self.fixed
        for found in (self.fixed, self.wanted, self.confirmed, self.to_add):
            found.discard(channel)
        self.to_remove.discard(channel)
        return fixed, self.waiters.pop(channel, None)

    def adopt(
        self, channel: str, fixed: bool, waiter: gevent.event.Event | None
    ) -> None:
        """``channel`` comes from another master's batch (``release``)."""
        if fixed:
            self.fixed.add(channel)
        self.add(channel)
        if waiter is not None:
            mine = self.waiters.setdefault(channel, waiter)
            if mine is not waiter:
                mine.rawlink(lambda _: waiter.set())

    # What the listener does -------------------------------------------------

    def pending(self) -> bool:
        return bool(self.to_add or self.to_remove)

    def take(self) -> tuple[list[list[str]], list[list[str]]]:
        """The SSUBSCRIBE and SUNSUBSCRIBE calls due, channels grouped by slot."""
        adds, removes = by_slot(self.to_add), by_slot(self.to_remove)
        self.confirmed.difference_update(self.to_remove)
        self.unsubscribing.update(self.to_remove)
        self.to_add, self.to_remove = set(), set()
        return adds, removes

    def restart(self) -> list[list[str]]:
        """A new connection: every wanted channel to subscribe, by slot."""
        self.live = self.stuck = False
        self.confirmed.clear()
        self.unsubscribing.clear()
        self.to_add, self.to_remove = set(), set()
        return by_slot(self.wanted)

    def heard(self, channel: str) -> None:
        """Redis confirmed an SSUBSCRIBE of ``channel``."""
        self.confirmed.add(channel)
        if channel not in self.wanted:  # dropped while its SSUBSCRIBE was on its way
            self.to_remove.add(channel)
            self.notify()
        event = self.waiters.pop(channel, None)
        if event is not None:
            event.set()

    def unsubscribed(self, channel: str) -> bool:
        """Redis confirmed an SUNSUBSCRIBE of ``channel``: whether we sent it
        (False: Redis dropped the channel, its slot having left the node)."""
        if self.unsubscribing[channel] <= 0:
            return False
        self.unsubscribing[channel] -= 1
        if not self.unsubscribing[channel]:
            del self.unsubscribing[channel]
        return True

    def joined(self) -> None:
        self.live = True

    def lost(self) -> None:
        """The connection is gone: nobody waits for its confirmations."""
        self.live = False
        self.confirmed.clear()
        self.unsubscribing.clear()
        waiters, self.waiters = self.waiters, {}
        for event in waiters.values():
            event.set()


def by_slot(channels: Iterable[str]) -> list[list[str]]:
    """``channels`` grouped by slot (SSUBSCRIBE takes one slot's per call)."""
    ordered = sorted(channels, key=lambda c: key_slot(c.encode()))
    grouped = itertools.groupby(ordered, key=lambda c: key_slot(c.encode()))
    return [list(group) for _, group in grouped]


# A URL's kinds of subscribers (bits): those who said it is one object, the others.
OBJECT, ANY = 1, 2


class Interest:
    """Which shard channels the gateway's subscribed URLs need (see the module)."""

    def __init__(
        self,
        channels_for: Callable[[str, bool], list[str]],
        route: Callable[[str], Batch | None],
        grace: float = GRACE,
    ) -> None:
        self.channels_for = channels_for  # (url, object_only) -> its channels
        self.route = route  # the Batch of a channel's master (None: not known yet)
        self.grace = grace
        self.counts: dict[str, int] = {}
        # A subscribed URL: the kinds of its subscribers (OBJECT | ANY bits).
        self.kinds: dict[str, int] = {}
        # A subscribed URL (less its query): the baseline of the first version
        # lookup answering it once its channels were held, or None.
        self.since: dict[str, int | None] = {}
        self.leaving: dict[str, float] = {}  # channel: when it may be dropped
        self._sweeper: gevent.Greenlet | None = None

    def want(self, url: str, object_only: bool = False) -> None:
        """``url`` has its first subscriber of this kind on this gateway
        (``object_only``: one that said the URL is an object)."""
        kind = OBJECT if object_only else ANY
        kinds = self.kinds.get(url, 0)
        if kinds & kind:
            return
        self.kinds[url] = kinds | kind
        self.since.setdefault(without_query(url), None)
        for channel in self.channels_for(url, object_only):
            count = self.counts.get(channel, 0)
            self.counts[channel] = count + 1
            if count == 0 and self.leaving.pop(channel, None) is None:
                batch = self.route(channel)
                if batch is not None:
                    batch.add(channel)

    def drop(self, url: str, object_only: bool = False) -> None:
        """``url`` lost its last subscriber of this kind on this gateway."""
        kind = OBJECT if object_only else ANY
        kinds = self.kinds.get(url, 0)
        if not kinds & kind:
            return
        if kinds == kind:
            del self.kinds[url]
            self.since.pop(without_query(url), None)
        else:
            self.kinds[url] = kinds & ~kind
        due = time.monotonic() + self.grace
        for channel in self.channels_for(url, object_only):
            count = self.counts.get(channel, 0) - 1
            if count > 0:
                self.counts[channel] = count
                continue
            self.counts.pop(channel, None)
            self.leaving[channel] = due
        if self.leaving and self._sweeper is None:
            self._sweeper = gevent.spawn_later(self.grace, self._sweep)

    def answered(self, url: str, baseline: int) -> None:
        """A version lookup answered a subscribe of ``url`` (after ``ready``)."""
        if url in self.since and self.since[url] is None:
            self.since[url] = baseline

    def needed(self) -> list[str]:
        """Every channel to hold now (the listeners start with them)."""
        return [*self.counts, *self.leaving]

    def ready(self, url: str, timeout: float) -> bool:
        """Wait until the channels ``url`` needs now are subscribed (those of
        every kind of its subscribers; none when it has none left); False:
        not in time."""
        kinds = self.kinds.get(url, 0)
        if not kinds:
            return True
        deadline = time.monotonic() + timeout
        for channel in self.channels_for(url, not kinds & ANY):
            batch = self.route(channel)
            left = max(deadline - time.monotonic(), 0.0)
            if batch is not None and not batch.wait(channel, left):
                return False
        return True

    def _sweep(self) -> None:
        """Unsubscribe what stayed unneeded for its grace (in batches)."""
        while self.leaving:
            now = time.monotonic()
            for channel, due in list(self.leaving.items()):
                if due <= now:
                    del self.leaving[channel]
                    batch = self.route(channel)
                    if batch is not None:
                        batch.remove(channel)
            if self.leaving:
                gevent.sleep(max(min(self.leaving.values()) - now, 0.01))
        self._sweeper = None
