"""Which subscribers may see an update: the authorization side of the fan-out.

An update reaches a subscriber only if the subscriber's user may GET the
object's own URL (and, for a collection subscriber, still the collection's),
as the ``Authorizer`` decides. The hub calls ``Gate.deliver()``, which never
blocks: what the cache knows is applied at once; a subscriber whose answer is
not known yet gets a backlog, worked off by one greenlet that asks the
authorizer (in its thread pool) and then delivers in the original order.

A delete cannot be asked about (the object is gone, its view answers 404), so
it goes only to subscribers whose user was last known to be allowed that URL,
however old that decision; a subscriber learns nothing, not even deletes,
about objects it may not see.

Visibility follows the object: an update may change who may see it (a draft
published, a post hidden). Each update gets its URL's *mark* from the
authorizer (``Authorizer.mark``): the same as before when it carries the same
visibility token as the last update (VISIBILITY_FIELDS unchanged: the warm
path), a new one otherwise; a decision counts only if asked at that mark or
later, so the others are held and asked again. A subscriber that loses the
object this way is sent ``{"type": "hidden"}`` (docs/protocol.md) instead of
the update: an object subscriber's subscription ends; a collection subscriber
hears it only if it was last known allowed the object, or nothing was known
(never after a cached "no": it must not learn of objects it never saw).
"""

from __future__ import annotations

import collections
import enum
import logging
import time
from collections.abc import Callable
from typing import Any

import gevent

from pushy.gateway import replies
from pushy.gateway.permissions import CHANGED, MISSING, SAME, Authorizer
from pushy.gateway.questions import Dropped, Refused
from pushy.gateway.stats import Stats
from pushy.messages import CREATE, DELETE, Update

logger = logging.getLogger(__name__)


class Verdict(enum.Enum):
    """What becomes of one update for one subscriber (``Gate._apply``)."""

    SEND = "send"  # it goes out
    DROP = "drop"  # withheld (counted)
    REVOKE = "revoke"  # its subscription ends: "no longer allowed"
    PENDING = "pending"  # not known yet: held until the authorizer answers
    HIDE = "hide"  # not allowed any more after this update: a "hidden" message


# Module globals for the hot loops (compared by identity).
SEND, DROP, REVOKE, PENDING, HIDE = Verdict

# How the gate ends a subscription: the hub's unsubscribe(connection, url).
Unsubscribe = Callable[[Any, str], None]


class Dispatch:
    """What the fan-out of one update needs to know, beyond its frame."""

    __slots__ = ("update", "frame", "stale", "mark", "changed")

    def __init__(self, update: Update, frame: bytes, mark: int, changed: int) -> None:
        self.update = update
        self.frame = frame
        self.stale = update.event == DELETE  # only the last known decision counts
        self.mark = mark  # decisions about its URL asked before this do not count
        # Whether it changed who may see the object: SAME, MAYBE or CHANGED.
        self.changed = changed


class Fanout:
    """One update on its way to the subscribers of one URL it concerns (the
    object's, its collection's or a filtered list's), with what the hot loops
    read of it as plain attributes."""

    __slots__ = (
        "dispatch", "subscribed", "frame", "url", "stale", "mark", "now", "revoked"
    )  # fmt: skip

    def __init__(self, dispatch: Dispatch, subscribed: str, now: float = 0.0) -> None:
        self.dispatch = dispatch
        self.subscribed = subscribed  # the URL these subscribers hold
        self.frame = dispatch.frame
        self.url = dispatch.update.url  # the object's URL, whose GET decides
        self.stale = dispatch.stale
        self.mark = dispatch.mark
        self.now = now
        # (connection, subscribed URL) to revoke once the loop is done: the
        # loops iterate the hub's subscriber sets, which revoking changes.
        self.revoked: list[tuple[Any, str]] = []


class Entry:
    """One update held for one subscriber until its decision is known."""

    __slots__ = ("frame", "subscribed", "url", "stale", "dispatch", "prior")

    def __init__(self, dispatch: Dispatch, subscribed: str, prior: bool | None) -> None:
        self.frame = dispatch.frame
        self.subscribed = subscribed  # the URL the subscriber holds
        self.url = dispatch.update.url  # the object's URL, whose GET decides
        self.stale = dispatch.stale
        self.dispatch = dispatch
        # The subscriber's last known answer about the object (None: none), as
        # the update arrived: whether a "no" now means it lost the object.
        self.prior = prior

    def refusal(self, prior: bool | None) -> Verdict:
        """The verdict when the answer is no: HIDE when the subscriber is losing
        an object it saw (or may have seen), else as before this update."""
        dispatch = self.dispatch
        if self.subscribed == self.url:
            # Hidden by a change of its VISIBILITY_FIELDS (or first seen with
            # them): "hidden". Otherwise (the TTL, a logout, a model whose
            # updates carry no token) a revocation, as before.
            if dispatch.changed is not SAME and dispatch.update.visibility is not None:
                return HIDE
            return REVOKE
        if dispatch.update.event == CREATE or prior is False:
            return DROP  # never seen: not even its URL goes out
        # Last known allowed; or unknown, and this update hid it (its token
        # changed from a known one). An unknown one that MAYBE changed (a model
        # not in VISIBILITY_FIELDS) is withheld: it may never have been visible.
        return HIDE if prior or dispatch.changed is CHANGED else DROP


class Group:
    """The connections of one visitor holding one URL, and what stays known of
    them for a while (``Authorizer.steady``): the gate's warm path."""

    __slots__ = ("visitor", "connections", "identity", "until", "changes")

    def __init__(self, visitor: Any) -> None:
        self.visitor = visitor
        self.connections: list = []
        self.identity: Any = None  # None: ask steady() again
        self.until = 0.0
        self.changes = -1  # the authorizer's changes when steady() answered


class Gate:
    """Filters the hub's fan-out through the authorizer's decisions.

    Its collaborators are explicit: the ``authorizer``, the process's
    ``stats`` and ``unsubscribe(connection, url)`` (the hub's), with which a
    revocation or a "hidden" ends a subscription. The hub holds the gate
    (``Hub.use_gate``) and calls ``deliver()`` and ``forget()``.
    """

    def __init__(
        self,
        authorizer: Authorizer,
        stats: Stats,
        unsubscribe: Unsubscribe,
        backlog_limit: int,
    ) -> None:
        self.authorizer = authorizer
        self.stats = stats
        self.unsubscribe = unsubscribe
        self.backlog_limit = backlog_limit
        self.backlogs: dict[Any, collections.deque[Entry]] = {}
        # url -> its subscribers in groups of one visitor, built at a dispatch,
        # dropped when the URL's subscribers change (the hub calls forget()).
        self.groups: dict[str, list[Group]] = {}

    def forget(self, url: str) -> None:
        """The subscribers of ``url`` changed: regroup them at its next update."""
        self.groups.pop(url, None)

    def deliver(
        self, update: Update, frame: bytes, object_subscribers: Any, collection: Any
    ) -> int:
        """Send ``frame`` to the subscribers allowed to see it; never blocks.

        Returns how many connections got it now (held ones are not counted).
        """
        now = time.monotonic()
        self.authorizer.fanning_out(now)
        if update.event == DELETE:
            self.authorizer.unmark(update.url)
            mark, changed = 0, SAME
        else:
            mark, changed = self.authorizer.mark(
                update.url, update.visibility, update.visibility_was
            )
        dispatch = Dispatch(update, frame, mark, changed)
        fans = [Fanout(dispatch, update.url, now)]
        sent = self._fan_out(fans[0], object_subscribers, ())
        if collection:
            fans.append(Fanout(dispatch, update.collection, now))
            sent += self._fan_out(fans[1], collection, object_subscribers)
        for fan in fans:
            self._revoke_all(fan)
        return sent

    def _fan_out(self, fan: Fanout, subscribers: Any, skip: Any) -> int:
        """``fan``'s update to ``subscribers`` (but those in ``skip``)."""
        if not skip:
            return self._fan_out_grouped(fan, subscribers)
        frame, subscribed, url, stale = fan.frame, fan.subscribed, fan.url, fan.stale
        now, mark = fan.now, fan.mark
        # Equal visitors (same session, page and address: one identity) share
        # a verdict: one cache lookup each.
        verdicts: dict[Any, Verdict] = {}
        backlogs = self.backlogs
        sent = 0
        # The hot loop: a warm dispatch costs a few lookups per subscriber, and
        # the truthiness tests skip even those when nothing is held or skipped.
        for connection in subscribers:
            if skip and connection in skip:  # subscribed to the object: done there
                continue
            key = connection.visitor
            if backlogs and (backlog := backlogs.get(connection)) is not None:
                # Keep its order: behind what it already waits for.
                self._hold(connection, backlog, self._entry(fan, key))
                continue
            verdict = verdicts.get(key)
            if verdict is None:
                verdict = self._verdict(key, subscribed, url, stale, now, mark)
                verdicts[key] = verdict
            if verdict is SEND:  # the warm path, inline (bench/results/PROFILE.md)
                connection.send(frame)
                sent += 1
            else:
                self._apply(verdict, [connection], fan)
        return sent

    def _fan_out_grouped(self, fan: Fanout, subscribers: Any) -> int:
        """The common case (nothing held, nobody skipped): one verdict per
        visitor, then the same tight send loop as without authorization.

        A group whose identity (and, for a collection, whose "yes" to it) is
        steady costs one cache lookup: its fresh "yes" for the object at this
        update's mark. Anything else goes through ``_verdict``, which asks,
        refreshes and holds as needed (bench/results/PROFILE.md, section 12).
        """
        frame, subscribed, url, stale = fan.frame, fan.subscribed, fan.url, fan.stale
        now, mark = fan.now, fan.mark
        groups = self.groups.get(subscribed)
        if groups is None:
            groups = self.groups[subscribed] = _grouped(subscribers)
        if self.backlogs:
            groups = self._hold_backlogged(fan, groups)
        authorizer = self.authorizer
        changes = authorizer.changes
        decision = authorizer.decisions.get
        fresh_after = now + authorizer.refresh_within  # no refresh due before
        collection = None if subscribed == url else subscribed
        sent = 0
        for group in groups:
            if group.changes != changes or group.until <= now:
                self._steady(group, collection, now, changes)
            if group.identity is not None:
                entry = decision((group.identity, url))
                if (
                    entry is not None
                    and entry[0]
                    and entry[1] > fresh_after
                    and entry[2] >= mark
                ):  # the warm path, inline: what known() would say, at once
                    for connection in group.connections:
                        connection.send(frame)
                    sent += len(group.connections)
                    continue
            verdict = self._verdict(group.visitor, subscribed, url, stale, now, mark)
            if verdict is SEND:
                for connection in group.connections:
                    connection.send(frame)
                sent += len(group.connections)
            else:
                self._apply(verdict, group.connections, fan)
        return sent

    def _hold_backlogged(self, fan: Fanout, groups: list[Group]) -> list[Group]:
        """Hold ``fan``'s update for the connections that wait on a decision
        (in their order, behind what they wait for); the groups of the others.

        Held connections are few and come in whole groups (one visitor's
        connections wait for the same answer), so the rest keep the warm path.
        """
        backlogs = self.backlogs
        rest = []
        for group in groups:
            held = [c for c in group.connections if c in backlogs]
            if not held:
                rest.append(group)
                continue
            entry = self._entry(fan, group.visitor)
            for connection in held:
                self._hold(connection, backlogs[connection], entry)
            if len(held) < len(group.connections):
                free = Group(group.visitor)
                free.connections = [c for c in group.connections if c not in backlogs]
                rest.append(free)
        return rest

    def _steady(
        self, group: Group, collection: str | None, now: float, changes: int
    ) -> None:
        steady = self.authorizer.steady(group.visitor, collection, now)
        group.changes = changes
        if steady is None:
            group.identity, group.until = None, now  # asked again next time
        else:
            group.identity, group.until = steady

    def _apply(
        self,
        verdict: Verdict,
        connections: list,
        fan: Fanout,
        held: Entry | None = None,
    ) -> int:
        """Carry out ``verdict`` for ``connections`` (of one visitor): the one
        place each verdict is acted on, at the fan-out and for ``held``
        updates. Returns how many were sent the update now."""
        if verdict is SEND:
            for connection in connections:
                connection.send(fan.frame)
            if held is not None:
                # Its lag counts once for this subscriber (those sent at the
                # dispatch count once for all: server.Gateway.dispatch).
                self.stats.delivered(held.dispatch.update.published)
            return len(connections)
        if verdict is PENDING:
            entry = self._entry(fan, connections[0].visitor)
            self._start_backlogs(connections, entry)
        elif verdict is REVOKE:
            fan.revoked.extend(
                (connection, fan.subscribed) for connection in connections
            )
        elif verdict is HIDE:
            for connection in connections:
                self.hide(connection, held)
        else:
            self.stats.updates_withheld += len(connections)
        return 0

    def _entry(self, fan: Fanout, visitor: Any) -> Entry:
        if fan.stale:
            return Entry(fan.dispatch, fan.subscribed, None)
        return Entry(
            fan.dispatch, fan.subscribed, self.authorizer.prior(visitor, fan.url)
        )

    def _verdict(
        self, key: Any, subscribed: str, url: str, stale: bool, now: float, mark: int
    ) -> Verdict:
        """What the cache says for a session's user, without asking anyone.

        A decision about ``url`` asked before ``mark`` does not count (PENDING):
        this update may have changed the answer. (Plain arguments, not the
        ``Fanout``: the warm path's one call per visitor, PROFILE.md.)
        """
        authorizer = self.authorizer
        identity = authorizer.identity_now(key, now)
        if identity is MISSING:
            return PENDING
        if subscribed != url:
            still = authorizer.known(identity, subscribed, now)
            if still is None:
                return PENDING
            if not still:
                return REVOKE
        allowed = authorizer.known(identity, url, now, stale, mark)
        if allowed is None:
            return DROP if stale else PENDING
        if allowed:
            return SEND
        return REVOKE if subscribed == url and not stale else DROP

    # Held updates ----------------------------------------------------------

    def _start_backlogs(self, connections: list, entry: Entry) -> None:
        """Hold ``entry`` for connections of one session (or one connection):
        one greenlet works off all their backlogs, so the first waits for the
        answer and the others find it in the cache (17,900 greenlets for one
        question, before).
        """
        for connection in connections:
            self.backlogs[connection] = collections.deque([entry])
        gevent.spawn(self._work_off_all, connections)

    def _work_off_all(self, connections: list) -> None:
        for connection in connections:
            if connection in self.backlogs:
                self._work_off(connection)

    def _hold(self, connection: Any, backlog: collections.deque, entry: Entry) -> None:
        if len(backlog) >= self.backlog_limit:
            # Too much waits on decisions: drop it and have the client reload
            # (through the site, which authorizes each request itself).
            backlog.clear()
            connection.send(replies.RESYNC)
        backlog.append(entry)

    def _work_off(self, connection: Any) -> None:
        """Deliver a connection's held updates in order, asking as needed."""
        backlog = self.backlogs[connection]
        # What this connection was sent of each object meanwhile: its "prior"
        # for a later entry of the same object (the cache is shared by the
        # user's other connections, whose backlogs move at their own pace).
        shown: dict[str, bool] = {}
        try:
            while backlog and not connection.closing:
                entry = backlog[0]
                if entry.subscribed not in connection.urls:
                    backlog.popleft()  # unsubscribed, revoked or gone: not asked
                    continue
                prior = shown.get(entry.url, entry.prior)
                try:
                    verdict = self._decide(connection.visitor, entry, prior, connection)
                except Refused:
                    # Not decided (too many questions waiting, or a view past
                    # its timeout): drop what waits and have the client reload.
                    backlog.clear()
                    connection.send(replies.RESYNC)
                    continue
                if not backlog or backlog[0] is not entry:
                    continue  # dropped for a resync while we waited
                backlog.popleft()
                if entry.subscribed not in connection.urls:
                    continue  # unsubscribed (or revoked) meanwhile
                if not entry.stale:
                    shown[entry.url] = verdict is SEND
                fan = Fanout(entry.dispatch, entry.subscribed)
                self._apply(verdict, [connection], fan, entry)
                self._revoke_all(fan)
        except Dropped:
            pass  # the connection closed while its question waited
        except Exception:
            logger.exception("dropping updates held for a connection")
        finally:
            if self.backlogs.get(connection) is backlog:
                del self.backlogs[connection]

    def _decide(
        self, visitor: Any, entry: Entry, prior: bool | None, asker: Any = None
    ) -> Verdict:
        """A held update's verdict, asking the authorizer (blocks this greenlet)."""
        authorizer = self.authorizer
        who = authorizer.who(visitor, asker=asker)
        if entry.subscribed != entry.url and not authorizer.decide(
            who, entry.subscribed, asker=asker
        ):
            return REVOKE
        if entry.stale:
            known = authorizer.known(who.identity, entry.url, 0.0, stale=True)
            return SEND if known else DROP
        if authorizer.decide(who, entry.url, entry.dispatch.mark, asker=asker):
            return SEND
        return entry.refusal(prior)

    # Revocation ------------------------------------------------------------

    def _revoke_all(self, fan: Fanout) -> None:
        """The revocations ``fan``'s loop left for after it."""
        revoked, fan.revoked = fan.revoked, []
        for connection, url in revoked:
            self.revoke(connection, url)

    def hide(self, connection: Any, entry: Entry) -> None:
        """Tell a subscriber the object is gone for it; an object subscriber's
        subscription ends (as a revocation's does), a collection's stays."""
        update = entry.dispatch.update
        if entry.subscribed == entry.url:
            if entry.url not in connection.urls:
                return
            self.unsubscribe(connection, entry.url)
        self.stats.updates_hidden += 1
        connection.send(replies.hidden(update.url, update.collection))

    def revoke(self, connection: Any, url: str) -> None:
        """End a subscription its user may no longer GET, telling the client."""
        if url not in connection.urls:
            return
        self.unsubscribe(connection, url)
        self.stats.revocations += 1
        connection.send(replies.error("forbidden", "no longer allowed", url))


def _grouped(subscribers: Any) -> list[Group]:
    """``subscribers`` in groups of one visitor (who share every verdict)."""
    groups: dict[Any, Group] = {}
    for connection in subscribers:
        group = groups.get(connection.visitor)
        if group is None:
            group = groups[connection.visitor] = Group(connection.visitor)
        group.connections.append(connection)
    return list(groups.values())
