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

    def want(self, url: str) -> None: ...

    def drop(self, url: str) -> None: ...


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
        # Told of a URL's first subscriber and of its last (Redis Cluster:
        # the channels it needs, interest.py); None: every update comes anyway.
        self.interest: Interest | None = None

    def use_gate(self, gate: Filter) -> None:
        """Send every update through ``gate`` from now on (before any subscribe)."""
        self.gate = gate

    def add(self, connection: Subscriber) -> None:
        self.connections.add(connection)

    def remove(self, connection: Subscriber) -> None:
        self.connections.discard(connection)
        for url in list(connection.urls):
            self.unsubscribe(connection, url)

    def subscribe(self, connection: Subscriber, url: str) -> None:
        if url in connection.urls:
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
            if self.interest is not None:
                self.interest.want(url)
            base = without_query(url)
            if base != url:
                self.filtered.setdefault(base, set()).add(url)
        subscribers.add(connection)
        self.subscriptions += 1
        if self.gate is not None:
            self.gate.forget(url)

    def unsubscribe(self, connection: Subscriber, url: str) -> None:
        if url not in connection.urls:
            return
        connection.urls.discard(url)
        connection.url_bytes -= url_size(url)
        subscribers = self.by_url.get(url)
        if subscribers is not None:
            subscribers.discard(connection)
            if not subscribers:
                del self.by_url[url]
                self._unfilter(url)
                if self.interest is not None:
                    self.interest.drop(url)
        self.subscriptions -= 1
        if self.gate is not None:
            self.gate.forget(url)
        if self.on_unsubscribe is not None:
            self.on_unsubscribe(connection, url)

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
