"""The client's actions (protocol v1) and what the gateway does about each.

One ``ClientActions`` per gateway turns a client's JSON text messages
(subscribe, unsubscribe, join, leave, ping; see docs/protocol.md) into calls on the hub,
the authorizer and the versions, and answers with the messages built in
``replies``. Each action has one handler, found in a table by its name. It
never touches a socket: answers go through ``Connection.send()``.

``handle()`` runs in the event loop and never blocks: a step that must wait
(an authorization not in the cache, a version lookup in Redis) goes to
``Connection.wait_for()``, which runs it in a greenlet and reads nothing more
from that client until it is done, so a client's messages are answered in
order and it never has more than one question waiting.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pushy.gateway import replies
from pushy.gateway.connection import Connection
from pushy.gateway.hub import url_size
from pushy.gateway.questions import Dropped, Refused
from pushy.logs import Throttled
from pushy.versions import valid_version

if TYPE_CHECKING:
    from pushy.gateway.hub import Hub
    from pushy.gateway.interest import Interest
    from pushy.gateway.permissions import Authorizer
    from pushy.gateway.presence import Presence
    from pushy.gateway.replay import Replay
    from pushy.gateway.shared import Shared
    from pushy.gateway.versions import VersionBook

# The logger keeps the module's former name: operators' LOGGING may name it
# (docs/deployment.md, "Where the logs go").
logger = logging.getLogger("pushy.gateway.protocol")

MAX_URL_LENGTH = 2048
# How long a subscribe's answer waits for its channels (Redis Cluster).
HELD_TIMEOUT = 2.0

# A handler: (the actions, the connection, the request as a dict).
Handler = Callable[["ClientActions", Connection, dict], None]


class ClientActions:
    """The client's JSON requests and the gateway's answers."""

    def __init__(
        self,
        shared: Shared,
        hub: Hub,
        versions: VersionBook,
        authorizer: Authorizer,
        presence: Presence | None = None,
        interest: Interest | None = None,
        replay: Replay | None = None,
    ) -> None:
        self.limits, self.stats = shared.limits, shared.stats
        self.hub, self.versions, self.authorizer = hub, versions, authorizer
        self.presence = presence
        # Redis Cluster: a subscribe is answered once its channels are held.
        self.interest = interest
        # Reads what a returning client missed (replay.py); None: resyncs only.
        self.replay = replay
        # One line per refused subscription, but no faster than one a second.
        self._refusals = Throttled(logger, interval=1.0)

    def handle(self, connection: Connection, payload: bytes) -> None:
        try:
            request = json.loads(payload)
        except (ValueError, RecursionError):  # RecursionError: nesting too deep
            self.error(connection, "invalid", "not JSON")
            return
        action = request.get("action") if isinstance(request, dict) else None
        handler = HANDLERS.get(action) if isinstance(action, str) else None
        if handler is None:
            self.error(connection, "invalid", "unknown action")
            return
        handler(self, connection, request)

    def ping(self, connection: Connection, request: dict) -> None:
        connection.send(replies.PONG)

    def unsubscribe_request(self, connection: Connection, request: dict) -> None:
        url = request.get("url")
        if not _valid_url(url):
            self.error(connection, "invalid", "url must be a URL string", url)
            return
        self.hub.unsubscribe(connection, url)
        if self.replay is not None:
            self.replay.reaching(connection, url, None)
        connection.send(replies.unsubscribed(url))

    def subscribe_request(
        self, connection: Connection, request: dict, join: bool = False
    ) -> None:
        """A subscribe, with the version its client last saw when it sent one."""
        url = request.get("url")
        if not _valid_url(url):
            self.error(connection, "invalid", "url must be a URL string", url)
            return
        hint = request.get("object", False)
        if hint is not False and _hint_problem(connection, url, hint, self.error):
            return
        if "version" not in request:  # protocol v1
            if self.replay is not None:
                self.replay.reaching(connection, url, None)
            self.subscribe(connection, url, join=join, object_only=hint)
            return
        seen = request["version"]
        if seen is not None and not valid_version(seen):
            message = "version must be a non-negative integer or null"
            self.error(connection, "invalid", message, url)
            return
        self.subscribe(
            connection, url, versioned=True, seen=seen, join=join, object_only=hint
        )

    def join_request(self, connection: Connection, request: dict) -> None:
        """A join: a subscribe (the same checks and authorization) that also
        makes the connection present on the URL (presence.py)."""
        if self.presence is None:
            self.error(connection, "invalid", "presence is not served here")
            return
        self.subscribe_request(connection, request, join=True)

    def leave_request(self, connection: Connection, request: dict) -> None:
        """No longer present on the URL; the subscription stays."""
        url = request.get("url")
        if not _valid_url(url):
            self.error(connection, "invalid", "url must be a URL string", url)
            return
        if self.presence is not None:
            self.presence.leave(connection, url)
        connection.send(replies.left(url))

    def subscribe(
        self,
        connection: Connection,
        url: str,
        versioned: bool = False,
        seen: int | None = None,
        join: bool = False,
        object_only: bool = False,
    ) -> None:
        """``object_only``: the client said ``url`` is one object (Redis
        Cluster: its channel alone; elsewhere it changes nothing)."""
        if url not in connection.urls:
            limits = self.limits
            if len(connection.urls) >= limits.max_subscriptions:
                self.error(connection, "limit", "too many subscriptions", url)
                return
            if connection.url_bytes + url_size(url) > limits.max_subscription_bytes:
                self.error(connection, "limit", "subscription URLs too long", url)
                return
            allowed = self._allowed_now(connection, url)
            if allowed is None:  # not in the cache: ask, off the event loop
                ask = self._ask_and_subscribe
                connection.wait_for(
                    ask, connection, url, versioned, seen, join, object_only
                )
                return
            if not allowed:
                connection.wait_for(self.forbidden, connection, url)
                return
            self._register(connection, url, seen, object_only)
        elif not object_only:  # said of it before: no longer only an object
            self.hub.subscribe(connection, url)
        self._answer(connection, url, versioned, seen, join)

    def _register(
        self, connection: Connection, url: str, seen: int | None, object_only: bool
    ) -> None:
        """Subscribe ``connection`` to ``url``; when it comes back with a version
        to replay from, hold what reaches it until the replay is read."""
        if seen is not None and self.replay is not None and self.replay.enabled:
            connection.hold()
        self.hub.subscribe(connection, url, object_only)

    def _ask_and_subscribe(
        self,
        connection: Connection,
        url: str,
        versioned: bool,
        seen: int | None,
        join: bool = False,
        object_only: bool = False,
    ) -> None:
        """A subscribe whose decision was not cached (in a greenlet)."""
        try:
            allowed = self._allowed(connection, url)
        except Refused as refused:  # busy, or a view too slow: not asked
            self.error(connection, refused.code, refused.message, url)
            return
        except Dropped:
            return  # the connection closed while its question waited
        if not allowed:
            self.forbidden(connection, url)
            return
        self._register(connection, url, seen, object_only)
        self._answer(connection, url, versioned, seen, join)

    def _answer(
        self,
        connection: Connection,
        url: str,
        versioned: bool,
        seen: int | None,
        join: bool = False,
    ) -> None:
        """Confirm a subscription (registered first: no update can fall between);
        for a join, then make the connection present."""
        if versioned:
            connection.wait_for(self._answer_versioned, connection, url, seen, join)
            return
        if self.interest is not None:
            connection.wait_for(self._answer_held, connection, url, join)
            return
        connection.send(replies.subscribed(url))
        if join:
            connection.wait_for(self._join, connection, url)

    def _answer_held(self, connection: Connection, url: str, join: bool) -> None:
        """A v1 subscribe on a cluster: confirmed once its channels are held."""
        self._held(url)
        connection.send(replies.subscribed(url))
        if join:
            self._join(connection, url)

    def _held(self, url: str) -> bool:
        """Wait (Redis Cluster) until this gateway holds the channels of ``url``:
        the version looked up after it, or the answer, can miss no update.

        False: not confirmed in time; that master's listener then starts over,
        and resyncs the clients once subscribed again (a master away: as well).
        """
        return self.interest is None or self.interest.ready(url, HELD_TIMEOUT)

    def _answer_versioned(
        self, connection: Connection, url: str, seen: int | None, join: bool = False
    ) -> None:
        # Held since the subscription was registered (_register), if it was
        # just now: the answer and the missed updates go out before the rest.
        holding = connection.holding
        frames: list[bytes] = []
        try:
            if self._held(url):
                missed = functools.partial(self._missed, connection, url)
                answer = self.versions.subscribed(connection, url, seen, missed)
                frames, current = answer
                if self.replay is not None:
                    self.replay.reaching(connection, url, seen if current else None)
            else:  # no version: this client reloads, and again at the resync to come
                self.versions.clients.discard(connection)
                frames = [replies.subscribed(url)]
        finally:
            if holding:
                connection.release(frames)
        if not holding:
            for frame in frames:
                connection.send(frame)
        if join:
            self._join(connection, url)

    def _missed(self, connection: Connection, url: str, seen: int) -> list | None:
        """The updates of ``url`` the client missed after ``seen`` (None: resync
        it). Only while the connection holds what it is sent: otherwise live
        ones may already have gone out ahead of them (a resubscribe, a hold
        given up), and the client resyncs."""
        missed = None
        if connection.holding and self.replay is not None:
            missed = self.replay.missed(connection, url, seen)
            if not connection.holding:  # given up while it was read: too late
                missed = None
        if missed is None:
            self.stats.version_resyncs += 1
        return missed

    def _join(self, connection: Connection, url: str) -> None:
        """Present ``connection`` on ``url`` as its person (in a greenlet: the
        session may have to be read; it is cached after the authorization)."""
        if connection.closing or url not in connection.urls:
            return  # closed, unsubscribed or revoked meanwhile
        try:
            who = self.authorizer.who(connection.visitor, connection)
        except Refused as refused:
            self.error(connection, refused.code, refused.message, url)
            return
        except Dropped:
            return
        if connection.closing or url not in connection.urls:
            return
        pid, name = self.presence.person(who, connection, url)
        connection.send(replies.joined(url, pid))
        self.presence.join(connection, url, pid, name)

    def forbidden(self, connection: Connection, url: str) -> None:
        """Refuse ``url``, saying what the site answered and as whom."""
        why = self._why_forbidden(connection, url)
        self._refusals.log(logging.INFO, "refused a subscription to %s: %s", url, why)
        self.error(connection, "forbidden", why, url)

    def _why_forbidden(self, connection: Connection, url: str) -> str:
        """ "not allowed: GET answered 302 to /login/?next=... (anonymous: no
        session cookie came with the WebSocket)": the site's answer, whose
        session asked, and the host-name advice only where it may apply."""
        visitor = connection.visitor
        try:
            who = self.authorizer.who(visitor, connection)
        except Exception:
            return "not allowed"
        said = self.authorizer.why_not(who, url)
        answer = f"not allowed: {said}" if said else "not allowed"
        if visitor.session_key is None:
            as_whom = "anonymous: no session cookie came with the WebSocket"
            if visitor.cookie_host_differs():
                as_whom += (
                    f" (browsers send cookies by host name: the page is on "
                    f"{visitor.host}, the gateway on {visitor.socket_host}; see "
                    "docs/deployment.md, 'A gateway on its own subdomain')"
                )
        elif who.anonymous:
            as_whom = (
                "anonymous: the session cookie names no logged-in user (the "
                "session expired or was logged out)"
            )
        else:
            as_whom = f"as {_username(who.user)}"
        return f"{answer} ({as_whom})"

    def _allowed_now(self, connection: Connection, url: str) -> bool | None:
        """The decision if it is cached (or not needed); None if it must be asked."""
        try:
            return self.authorizer.allows_now(connection.visitor, url)
        except Exception:
            logger.exception("authorization failed for %s: refusing", url)
            return False

    def _allowed(self, connection: Connection, url: str) -> bool:
        # Blocks only this greenlet; the connection reads nothing meanwhile, so
        # it never has more than one decision waiting in the pool.
        authorizer = self.authorizer
        if not authorizer.needed:
            return True
        try:
            return authorizer.allows(connection.visitor, url, asker=connection)
        except (Refused, Dropped):
            raise
        except Exception:
            logger.exception("authorization failed for %s: refusing", url)
            return False

    def error(
        self, connection: Connection, code: str, message: str, url: Any = None
    ) -> None:
        self.stats.errors += 1
        url = url[:MAX_URL_LENGTH] if isinstance(url, str) else None
        connection.send(replies.error(code, message, url))


# The client's actions (docs/protocol.md, "Client → gateway"), by name.
HANDLERS: dict[str, Handler] = {
    "subscribe": ClientActions.subscribe_request,
    "unsubscribe": ClientActions.unsubscribe_request,
    "ping": ClientActions.ping,
    "join": ClientActions.join_request,
    "leave": ClientActions.leave_request,
}


def _hint_problem(
    connection: Connection, url: str, hint: Any, error: Callable[..., None]
) -> bool:
    """Whether a subscribe's ``"object"`` is refused (answered with an error):
    true or false only, and true never of a URL with a query string, which is
    a filtered list (docs/protocol.md)."""
    if hint is not True:
        error(connection, "invalid", "object must be true or false", url)
        return True
    if "?" in url:
        message = (
            "object: true names one object, and a URL with a query string is a "
            "list (filtered): subscribe to it without object"
        )
        error(connection, "invalid", message, url)
        return True
    return False


def _valid_url(url: Any) -> bool:
    return (
        isinstance(url, str)
        and 0 < len(url) <= MAX_URL_LENGTH
        and url.isprintable()
        and not url.isspace()
    )


def _username(user: Any) -> str:
    try:
        return str(user.get_username())
    except Exception:
        return "this user"
