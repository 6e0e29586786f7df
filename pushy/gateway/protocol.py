"""Protocol v1: what a client asks for, and what the gateway answers.

One ``Protocol`` per gateway turns a client's JSON text messages (subscribe,
unsubscribe, ping; see docs/protocol.md) into calls on the hub, the
authorizer and the versions, and answers with messages of its own. It never
touches a socket: answers go through ``Connection.send()``.

``handle()`` runs in the event loop and never blocks: a step that must wait
(an authorization not in the cache, a version lookup in Redis) goes to
``Connection.wait_for()``, which runs it in a greenlet and reads nothing more
from that client until it is done, so a client's messages are answered in
order and it never has more than one question waiting.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pushy.gateway.connection import Connection
from pushy.gateway.frames import message_frame
from pushy.gateway.hub import url_size
from pushy.gateway.questions import Dropped, Refused
from pushy.logs import Throttled
from pushy.versions import valid_version

logger = logging.getLogger(__name__)

PONG_FRAME = message_frame({"type": "pong"})
MAX_URL_LENGTH = 2048


class Protocol:
    """Protocol v1: the client's JSON requests and the gateway's answers."""

    def __init__(self, gateway: Any) -> None:
        self.gateway = gateway
        # One line per refused subscription, but no faster than one a second.
        self._refusals = Throttled(logger, interval=1.0)

    def handle(self, connection: Connection, payload: bytes) -> None:
        try:
            request = json.loads(payload)
        except (ValueError, RecursionError):  # RecursionError: nesting too deep
            self.error(connection, "invalid", "not JSON")
            return
        action = request.get("action") if isinstance(request, dict) else None
        if action == "ping":
            connection.send(PONG_FRAME)
        elif action in ("subscribe", "unsubscribe"):
            url = request.get("url")
            if not _valid_url(url):
                self.error(connection, "invalid", "url must be a URL string", url)
            elif action == "subscribe":
                self._subscribe_request(connection, url, request)
            else:
                self.gateway.hub.unsubscribe(connection, url)
                connection.send(message_frame({"type": "unsubscribed", "url": url}))
        else:
            self.error(connection, "invalid", "unknown action")

    def _subscribe_request(
        self, connection: Connection, url: str, request: dict
    ) -> None:
        """A subscribe, with the version its client last saw when it sent one."""
        if "version" not in request:  # protocol v1
            self.subscribe(connection, url)
            return
        seen = request["version"]
        if seen is not None and not valid_version(seen):
            message = "version must be a non-negative integer or null"
            self.error(connection, "invalid", message, url)
            return
        self.subscribe(connection, url, versioned=True, seen=seen)

    def subscribe(
        self,
        connection: Connection,
        url: str,
        versioned: bool = False,
        seen: int | None = None,
    ) -> None:
        if url not in connection.urls:
            limits = self.gateway.limits
            if len(connection.urls) >= limits.max_subscriptions:
                self.error(connection, "limit", "too many subscriptions", url)
                return
            if connection.url_bytes + url_size(url) > limits.max_subscription_bytes:
                self.error(connection, "limit", "subscription URLs too long", url)
                return
            allowed = self._allowed_now(connection, url)
            if allowed is None:  # not in the cache: ask, off the event loop
                ask = self._ask_and_subscribe
                connection.wait_for(ask, connection, url, versioned, seen)
                return
            if not allowed:
                connection.wait_for(self.forbidden, connection, url)
                return
            self.gateway.hub.subscribe(connection, url)
        self._answer(connection, url, versioned, seen)

    def _ask_and_subscribe(
        self, connection: Connection, url: str, versioned: bool, seen: int | None
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
        self.gateway.hub.subscribe(connection, url)
        self._answer(connection, url, versioned, seen)

    def _answer(
        self, connection: Connection, url: str, versioned: bool, seen: int | None
    ) -> None:
        """Confirm a subscription (registered first: no update can fall between)."""
        if versioned:
            connection.wait_for(self._answer_versioned, connection, url, seen)
            return
        connection.send(message_frame({"type": "subscribed", "url": url}))

    def _answer_versioned(
        self, connection: Connection, url: str, seen: int | None
    ) -> None:
        for frame in self.gateway.versions.subscribed(connection, url, seen):
            connection.send(frame)

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
            who = self.gateway.authorizer.who(visitor, connection)
        except Exception:
            return "not allowed"
        said = self.gateway.authorizer.why_not(who, url)
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
            return self.gateway.authorizer.allows_now(connection.visitor, url)
        except Exception:
            logger.exception("authorization failed for %s: refusing", url)
            return False

    def _allowed(self, connection: Connection, url: str) -> bool:
        # Blocks only this greenlet; the connection reads nothing meanwhile, so
        # it never has more than one decision waiting in the pool.
        authorizer = self.gateway.authorizer
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
        self.gateway.stats.errors += 1
        body: dict[str, Any] = {"type": "error", "code": code, "message": message}
        if isinstance(url, str):
            body["url"] = url[:MAX_URL_LENGTH]
        connection.send(message_frame(body))


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
