"""Who is subscribed to what, and the fan-out of one update to its subscribers.

The hub never touches a socket: it hands the same frame bytes to each
subscriber's ``send()``, which only queues them (see ``connection.py``). With
authorization on, delivery goes through the gate (``gate.py``), which holds
back what a subscriber may not see.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable
from typing import Protocol

from pushy.gateway import replies
from pushy.gateway.stats import Stats
from pushy.messages import Update
from pushy.object_urls import without_query

logger = logging.getLogger(__name__)


class Interest(Protocol):
    """What the hub tells of the URLs it holds (interest.py's ``Interest``)."""

    def want(self, url: str, object_only: bool = False) -> None: ...

    def drop(self, url: str, object_only: bool = False) -> None: ...


class Subscriber(Protocol):
    """What the hub needs of a connection."""

    urls: set[str]
    url_bytes: int

    def send(self, frame: bytes) -> None: ...


class Filter(Protocol):
    """What the hub needs of a gate (gate.py's ``Gate``): the fan-out of an
    update through it, and word that a URL's subscribers changed."""

    def deliver(
        self,
        update: Update,
        frame: bytes,
        object_subscribers: Iterable[Subscriber],
        collection: Iterable[Subscriber],
    ) -> int: ...

    def forget(self, url: str) -> None: ...


def url_size(url: str) -> int:
    """The UTF-8 bytes of ``url``, what MAX_SUBSCRIPTION_BYTES counts."""
    return len(url) if url.isascii() else len(url.encode())


class Hub:
    """The url -> subscribers registry of one gateway process."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.connections: set[Subscriber] = set()
        self.by_url: dict[str, set[Subscriber]] = {}
        # Subscribed URLs with a query string, by the URL without it: the
        # filtered lists of a collection (/api/order/ -> {/api/order/?s=open}).
        self.filtered: dict[str, set[str]] = {}
        self.subscriptions = 0
        # Filters the fan-out by authorization (gate.py); None: everyone sees all.
        self.gate: Filter | None = None
        # Told of every subscription that ends (presence.py: a member present
        # on a URL leaves it with its subscription, revoked ones included).
        self.on_unsubscribe: Callable[[Subscriber, str], object] | None = None
        # Told of a URL's first subscriber and of its last, of each kind
        # (Redis Cluster: the channels it needs, interest.py); None: every
        # update comes anyway, and a subscriber's "object" hint is ignored.
        self.interest: Interest | None = None
        # With an interest: each URL's subscribers that did not say it is one
        # object (they need its collection's channels too). Kept for these,
        # so that hinted object URLs, the many, cost nothing more here.
        self.wide: dict[str, set[Subscriber]] = {}

    def use_gate(self, gate: Filter) -> None:
        """Send every update through ``gate`` from now on (before any subscribe)."""
        self.gate = gate

    def add(self, connection: Subscriber) -> None:
        self.connections.add(connection)

    def remove(self, connection: Subscriber) -> None:
        self.connections.discard(connection)
        for url in list(connection.urls):
            self.unsubscribe(connection, url)

    def subscribe(
        self, connection: Subscriber, url: str, object_only: bool = False
    ) -> None:
        """``object_only``: the subscriber said ``url`` is one object (a
        subscription of it widens when it comes again without saying so)."""
        if url in connection.urls:
            if not object_only and self.interest is not None:
                self._widen(connection, url)
            return
        # Interned: every connection subscribed to a URL holds the one string
        # (the by_url key), not the copy its own message was parsed into.
        # Interned strings are freed with their last reference.
        url = sys.intern(url)
        connection.urls.add(url)
        connection.url_bytes += url_size(url)
        subscribers = self.by_url.get(url)
        if subscribers is None:
            subscribers = self.by_url[url] = set()
            base = without_query(url)
            if base != url:
                self.filtered.setdefault(base, set()).add(url)
        if self.interest is not None:
            self._want(connection, url, subscribers, object_only)
        subscribers.add(connection)
        self.subscriptions += 1
        if self.gate is not None:
            self.gate.forget(url)

    def _want(
        self, connection: Subscriber, url: str, subscribers: set, object_only: bool
    ) -> None:
        """Tell the interest of the first subscriber of ``url`` of its kind
        (``subscribers``: those before ``connection``)."""
        wide = self.wide.get(url)
        if object_only:
            if len(subscribers) == len(wide or ()):  # no hinted one yet
                self.interest.want(url, True)
            return
        if wide is None:
            wide = self.wide[url] = set()
            self.interest.want(url)
        wide.add(connection)

    def _widen(self, connection: Subscriber, url: str) -> None:
        """A hinted subscriber subscribed again without the hint: it needs
        the collection's channels too (they are wanted before the object-only
        kind may be dropped, so the object's channel is held throughout)."""
        wide = self.wide.get(url)
        if wide is not None and connection in wide:
            return
        self._want(connection, url, self.by_url[url], False)
        if len(self.by_url[url]) == len(self.wide[url]):  # no hinted one left
            self.interest.drop(url, True)

    def unsubscribe(self, connection: Subscriber, url: str) -> None:
        if url not in connection.urls:
            return
        connection.urls.discard(url)
        connection.url_bytes -= url_size(url)
        subscribers = self.by_url.get(url)
        if subscribers is not None:
            subscribers.discard(connection)
            if self.interest is not None:
                self._unwant(connection, url, subscribers)
            if not subscribers:
                del self.by_url[url]
                self._unfilter(url)
        self.subscriptions -= 1
        if self.gate is not None:
            self.gate.forget(url)
        if self.on_unsubscribe is not None:
            self.on_unsubscribe(connection, url)

    def _unwant(self, connection: Subscriber, url: str, subscribers: set) -> None:
        """Tell the interest of the last subscriber of ``url`` of its kind
        (``subscribers``: those left)."""
        wide = self.wide.get(url)
        if wide is not None and connection in wide:
            wide.discard(connection)
            if not wide:
                del self.wide[url]
                self.interest.drop(url)
        elif len(subscribers) == len(wide or ()):  # no hinted one left
            self.interest.drop(url, True)

    def _unfilter(self, url: str) -> None:
        base = without_query(url)
        if base == url:
            return
        variants = self.filtered.get(base)
        if variants is not None:
            variants.discard(url)
            if not variants:
                del self.filtered[base]

    def dispatch(self, update: Update) -> int:
        """Queue ``update`` to the subscribers of its URL and of its collection,
        then to those of the collection's filtered lists (with a query string),
        each told of it as a member of the list it holds.

        Returns how many connections it was queued to.
        """
        self.stats.updates_in += 1
        sent = self._dispatch(update)
        if update.collection and self.filtered:
            for variant in self.filtered.get(update.collection, ()):
                sent += self._dispatch(update.replace(collection=variant), False)
        return sent

    def _dispatch(self, update: Update, with_object: bool = True) -> int:
        """The fan-out to the object's subscribers (unless ``with_object`` is
        false) and to its collection's; a frame encoded once, and a client
        subscribed to both gets it once."""
        object_subscribers = self.by_url.get(update.url, ()) if with_object else ()
        collection = self.by_url.get(update.collection, ()) if update.collection else ()
        if not object_subscribers and not collection:
            return 0
        frame = replies.update(update)
        if self.gate is not None:
            return self.gate.deliver(update, frame, object_subscribers, collection)
        # No copies: send() never blocks, so no greenlet can edit the registry
        # during these loops (a closed client unregisters later, from its reader).
        for connection in collection:
            connection.send(frame)
        sent = len(collection)
        for connection in object_subscribers:
            if connection not in collection:  # subscribed to both: once is enough
                connection.send(frame)
                sent += 1
        return sent

    def broadcast(self, frame: bytes, connections: Iterable[Subscriber] = ()) -> None:
        """Queue ``frame`` to ``connections``, by default to every connection."""
        for connection in list(connections or self.connections):
            connection.send(frame)
