"""Recovery without refetch: the updates a returning client missed, from Redis.

A client that subscribes with the version it last saw, to a URL that changed
since, is sent the updates it missed, read from the short history the publish
script keeps beside the versions (``versions.REPLAY_SCRIPT``), instead of a
resync, when the history vouches for the whole gap. Otherwise (the gap is
older than the history, an epoch began, Redis cannot be read) it gets the
resync it always got. docs/decisions.md, "Recovery without refetch".

Each missed update passes the same rules as a live one (gate.py), decided now:
an update goes out only if the visitor may GET the object now, and one that
carries ``data`` only if no change in the gap touched its VISIBILITY_FIELDS
(else a state the visitor could not see might be shown). A collection member
the visitor never saw (a create, or one last known refused) is left out, as the
gate leaves it out. Anything else that cannot be sent (a member that is no
longer visible, a delete whose object was never decided, a question refused)
makes the whole URL a resync: the client then reads it through the site, which
authorizes every request, and is never shown less than it should notice.

While the history is read, the connection holds what is sent to it
(``Writer.hold()``), so the missed updates go out first, in version order, and
a live update that is also among them goes out once (the history is read in
one step: every update it lacks arrived later, with a later version).
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

import redis

from pushy import versions
from pushy.gateway import replies
from pushy.gateway.permissions import Authorizer
from pushy.gateway.questions import Dropped, Refused
from pushy.gateway.side_redis import side_client
from pushy.logs import Throttled
from pushy.messages import CREATE, DELETE, Update
from pushy.object_urls import without_query

logger = logging.getLogger(__name__)


class CannotReplay(Exception):
    """Raised when one of the missed updates can be neither sent nor left out."""


class Replay:
    """Reads a returning client's missed updates and decides which it may see."""

    def __init__(
        self, redis_url: str, authorizer: Authorizer, stats: Any, enabled: bool
    ) -> None:
        self.redis_url = redis_url
        self.authorizer = authorizer
        self.stats = stats
        self.enabled = enabled
        self._log = Throttled(logger)
        # connection -> {url: v}: every update of url after v reaches it (its
        # replay or answer "unchanged", then live): another URL's replay
        # leaves those out, so a page holding an object and its collection
        # gets each update once, as live (hub.py).
        self._reaching: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def reaching(self, connection: Any, url: str, since: int | None) -> None:
        """Every update of ``url`` after ``since`` reaches ``connection`` (None:
        not known, as after a resync, a protocol v1 subscribe, an unsubscribe)."""
        known = self._reaching.get(connection)
        if since is not None:
            if known is None:
                known = self._reaching[connection] = {}
            known[url] = since
        elif known is not None:
            known.pop(url, None)

    def missed(self, connection: Any, url: str, seen: int) -> list[bytes] | None:
        """The frames of the updates of ``url`` after version ``seen`` that
        ``connection`` may see, oldest first; None: resync the URL instead."""
        base = without_query(url)
        try:
            bodies = versions.replay(side_client(self.redis_url), base, seen)
        except (redis.RedisError, ValueError) as e:
            self._log.log(logging.WARNING, "cannot read the update history: %s", e)
            return None
        if bodies is None:
            return None
        try:
            frames = [
                replies.update(update)
                for update in self._updates(bodies, url, base)
                if not self._sent_elsewhere(connection, url, update)
                and self._visible(connection, url, update)
            ]
        except (CannotReplay, ValueError, Refused, Dropped):
            return None
        self.stats.replays += 1
        self.stats.updates_replayed += len(frames)
        return frames

    @staticmethod
    def _updates(bodies: list[bytes], url: str, base: str) -> list[Update]:
        updates = [Update.decode(body) for body in bodies]
        if base == url:
            return updates
        # A filtered list hears of its collection's members, as itself (hub.py).
        return [
            update.replace(collection=url)
            for update in updates
            if update.collection == base
        ]

    def _sent_elsewhere(self, connection: Any, subscribed: str, update: Update) -> bool:
        """Whether ``update`` reached ``connection`` through another URL it holds
        (the object's, or its collection's), replayed or live. A filtered list
        is told of its members whatever else the client holds (hub.py)."""
        known = self._reaching.get(connection)
        if (
            not known
            or update.version is None
            or without_query(subscribed) != subscribed
        ):
            return False
        for other in (update.url, update.collection):
            if other != subscribed and other in connection.urls:
                since = known.get(other)
                if since is not None and update.version > since:
                    return True
        return False

    def _visible(self, connection: Any, subscribed: str, update: Update) -> bool:
        """Whether to send ``update``; CannotReplay when it must not be left out
        yet cannot be sent."""
        authorizer = self.authorizer
        if not authorizer.needed:
            return True
        if update.data is not None and (
            update.visibility is None or update.visibility != update.visibility_was
        ):
            raise CannotReplay  # it may show a state the visitor could not see
        prior = authorizer.prior(connection.visitor, update.url)  # before asking
        who = authorizer.who(connection.visitor, asker=connection)
        if update.event == DELETE:  # its object is gone: what was last known
            allowed = authorizer.known(who.identity, update.url, 0.0, stale=True)
        else:
            allowed = authorizer.decide(who, update.url, asker=connection)
        if allowed:
            return True
        collection = subscribed != update.url
        if collection and (update.event == CREATE or prior is False):
            return False  # never seen: not even its URL goes out (gate.py)
        raise CannotReplay
