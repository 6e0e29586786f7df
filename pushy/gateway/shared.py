"""What the gateway's parts share, passed to each explicitly.

No part holds a reference to the ``Gateway``: each gets the ``Shared`` object
(the limits, the counters, the event loop, the write-through flag) and the few
callbacks it reports through, typed here as ``typing.Protocol`` classes.
"""

from __future__ import annotations

import dataclasses
import socket
from typing import Any, Protocol

from pushy import conf
from pushy.gateway.stats import Stats


@dataclasses.dataclass(frozen=True)
class Limits:
    """The PUSHY_SETTINGS limits, read once at start-up."""

    max_message: int
    max_subscriptions: int
    max_subscription_bytes: int
    queue_size: int
    queue_bytes: int
    write_timeout: float
    handshake_timeout: float
    shutdown_timeout: float
    ping_interval: float
    rate: float
    burst: int

    @classmethod
    def from_settings(cls) -> Limits:
        return cls(
            max_message=conf.get("MAX_MESSAGE_BYTES"),
            max_subscriptions=conf.get("MAX_SUBSCRIPTIONS"),
            max_subscription_bytes=conf.get("MAX_SUBSCRIPTION_BYTES"),
            queue_size=conf.get("SEND_QUEUE_SIZE"),
            queue_bytes=conf.get("SEND_QUEUE_BYTES"),
            write_timeout=conf.get("WRITE_TIMEOUT"),
            handshake_timeout=conf.get("HANDSHAKE_TIMEOUT"),
            shutdown_timeout=conf.get("SHUTDOWN_TIMEOUT"),
            ping_interval=conf.get("PING_INTERVAL"),
            rate=conf.get("RATE_LIMIT"),
            burst=max(conf.get("MAX_SUBSCRIPTIONS"), 1),
        )


class Shared:
    """The state many parts of one gateway process read (uvicorn's ServerState).

    ``write_through`` is True while the gateway fans out an update that found
    the listener idle: a writer then writes its frame at once
    (``Gateway.dispatch``).
    """

    __slots__ = ("limits", "stats", "loop", "write_through")

    def __init__(self, limits: Limits, stats: Stats, loop: Any) -> None:
        self.limits = limits
        self.stats = stats
        self.loop = loop
        self.write_through = False


class ConnectionEvents(Protocol):
    """What a connection tells the rest of the gateway."""

    def joined(self, connection: Any) -> None:
        """It is open: the hub counts it."""

    def message(self, connection: Any, payload: bytes) -> None:
        """It sent a text message (the protocol handles it)."""

    def leaving(self, connection: Any) -> None:
        """Its next frame is a close: drop the questions only it waits for."""

    def unsubscribe(self, connection: Any) -> None:
        """It ended while a message was handled: undo what that subscribed."""

    def ended(self, connection: Any) -> None:
        """It left (its socket may still send a close frame)."""


class RequestHandler(Protocol):
    """Where the acceptor hands a request whose head is complete."""

    def __call__(
        self, sock: socket.socket, head: bytes, rest: bytes, remote_addr: str
    ) -> None: ...
