"""The gateway's one Redis subscription, kept alive, feeding the hub.

One greenlet, one dedicated pub/sub connection, PSUBSCRIBE ``CHANNEL_PREFIX*``.

Nothing on Redis can silence it:

- every message is decoded and type-checked (``Update.decode`` raises only
  ValueError); an invalid one is dropped, counted and logged at most once a
  minute; an unexpected error while handling one message is logged with its
  traceback (also at most once a minute) and only that message is skipped;
- the connection must prove it is alive: with nothing heard for
  ``REDIS_HEALTH_INTERVAL`` seconds it sends a PING, and if nothing (the pong or
  any message) arrives within as long again, it is dropped as a partition;
  TCP keepalive is set short as well;
- when Redis goes away it logs, retries with exponential backoff capped at
  ``MAX_BACKOFF``, subscribes again and then tells every client to resync,
  since updates published meanwhile were lost;
- a message on a control channel (``controls``: the resync requests of
  ``manage.py pushy_capture``, ``manage.py pushy_explain``'s questions) goes to
  its handler instead of being decoded; a handler must not block;
- if the greenlet ends anyway, a link restarts it, and clients get a resync
  once it has subscribed again. Reconnecting and restarting share one backoff.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

import gevent
import gevent.event
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from pushy.logs import Throttled
from pushy.messages import Update
from pushy.redis_clients import client_from_url, redacted

logger = logging.getLogger(__name__)

FIRST_BACKOFF = 0.1
MAX_BACKOFF = 5.0
# The longest one wait for a message lasts.
POLL_TIMEOUT = 1.0
CONNECT_TIMEOUT = 2.0
# In a burst, the writers get the loop after this many updates: often enough that
# queues do not fill, rarely enough that each write carries several frames.
YIELD_EVERY = 32
# The argument of our PINGs, so their pongs are recognisable in a capture.
PING_TOKEN = "pushy-gateway-liveness"
# Kernel keepalive on the subscription: first probe after 5 s of silence, then
# every 2 s, 3 unanswered probes end the connection (the OS default is 2 hours).
KEEPALIVE = {"TCP_KEEPIDLE": 5, "TCP_KEEPINTVL": 2, "TCP_KEEPCNT": 3}
# Longest shown part of an invalid message's reason.
REASON_CHARS = 200


def keepalive_options() -> dict[int, int]:
    """The KEEPALIVE options this platform has (macOS lacks TCP_KEEPIDLE)."""
    return {
        getattr(socket, name): value
        for name, value in KEEPALIVE.items()
        if hasattr(socket, name)
    }


class Stalled(redis.ConnectionError):
    """Raised when the subscription stays silent past its PING deadline."""


class Liveness:
    """When to PING the subscription, and when its silence means it is dead.

    Any traffic counts as life (in a burst the pong waits behind the messages).
    With nothing heard for ``interval``, a PING goes out; with nothing heard for
    ``interval`` after that, the connection is dead. So a black hole is noticed
    within ``2 * interval`` of the last thing heard.
    """

    def __init__(self, interval: float, now: float) -> None:
        self.interval = interval
        self.heard_at = now
        self.pinged_at: float | None = None

    def heard(self, now: float) -> None:
        self.heard_at = now
        self.pinged_at = None

    def ping_due(self, now: float) -> bool:
        return self.pinged_at is None and now - self.heard_at >= self.interval

    def pinged(self, now: float) -> None:
        self.pinged_at = now

    def dead(self, now: float) -> bool:
        return self.pinged_at is not None and now - self.pinged_at >= self.interval

    def wait(self, now: float) -> float:
        """How long the next wait for a message may last."""
        start = self.heard_at if self.pinged_at is None else self.pinged_at
        return max(0.0, min(POLL_TIMEOUT, start + self.interval - now))


class Backoff:
    """Delays between attempts: doubling from FIRST_BACKOFF up to ``cap``."""

    def __init__(self, cap: float = MAX_BACKOFF) -> None:
        self.delay = FIRST_BACKOFF
        self.cap = cap

    @property
    def fresh(self) -> bool:
        """No failure since the last success."""
        return self.delay == FIRST_BACKOFF

    def next(self) -> float:
        """The delay before the next attempt (each one twice the last)."""
        delay = self.delay
        self.delay = min(delay * 2, self.cap)
        return delay

    def reset(self) -> None:
        self.delay = FIRST_BACKOFF


@dataclass(frozen=True)
class Hooks:
    """What the listener calls.

    ``update(update)`` for each valid update; ``resync()`` once subscribed
    again after a loss; ``count(name)`` for each event worth a counter
    (``updates_invalid``, ``updates_failed``, ``listener_restarts``,
    ``redis_ping_timeouts``); ``subscribed()`` after the first subscription;
    ``idle()`` whenever nothing more is there to read, before the listener waits
    for Redis: the next update will have arrived alone, while the updates of a
    burst come one right behind the other.
    """

    update: Callable[[Update], object]
    resync: Callable[[], object]
    count: Callable[[str], object]
    subscribed: Callable[[], object] | None = None
    idle: Callable[[], object] | None = None


class Listener:
    """Subscribes to ``pattern`` at ``url`` and calls ``hooks``.

    ``controls`` maps a control channel to its handler(body); such a message is
    logged ("<name> requested on <channel>", the name being the channel's last
    ``:`` part) and handed over instead of being decoded; those of the
    channels in ``quiet`` are handed over without a log line.
    """

    # What a published message is called (a cluster's sharded ones: smessage).
    message_type = "pmessage"

    def __init__(
        self,
        url: str,
        pattern: str,
        hooks: Hooks,
        controls: Mapping[str, Callable[[bytes], object]] | None = None,
        health_interval: float = 5.0,
        max_update_bytes: int = 1024 * 1024,
        quiet: Collection[str] = (),
    ) -> None:
        self.url = url
        self.pattern = pattern
        self.hooks = hooks
        # redis-py hands channels over as bytes.
        self.controls = {c.encode(): h for c, h in (controls or {}).items()}
        # Control channels whose messages are routine (presence): not logged.
        self.quiet = {c.encode() for c in quiet}
        self.health_interval = health_interval
        self.max_update_bytes = max_update_bytes
        self.live = False
        # Set once the first attempt to subscribe has succeeded or failed.
        self.first_attempt = gevent.event.Event()
        self._greenlet: gevent.Greenlet | None = None
        self._stopping = False
        self._resync_due = False
        self._backoff = Backoff()
        self._invalid_log = Throttled(logger)
        self._failure_log = Throttled(logger)

    # Supervision ---------------------------------------------------------

    def start(self) -> None:
        self._spawn(0)

    def stop(self) -> None:
        self._stopping = True
        if self._greenlet is not None:
            self._greenlet.kill()

    def _spawn(self, delay: float) -> None:
        greenlet = gevent.Greenlet(self._run)
        # Only an exception ends _run; GreenletExit (stop()) counts as success.
        greenlet.link_exception(self._crashed)
        self._greenlet = greenlet
        greenlet.start_later(delay)

    def _crashed(self, greenlet: gevent.Greenlet) -> None:
        if self._stopping:
            return
        self.live = False
        self._resync_due = True
        self.hooks.count("listener_restarts")
        delay = self._backoff.next()
        logger.error(
            "the Redis listener ended with %r; restarting it in %.1fs",
            greenlet.exception,
            delay,
        )
        self._spawn(delay)

    # The subscription ----------------------------------------------------

    def _client(self) -> redis.Redis:
        return client_from_url(self.url, **self._options())

    def _options(self) -> dict:
        options = {}
        if not self.url.startswith("unix:"):  # keepalive is TCP's (redis-py refuses)
            options = {
                "socket_keepalive": True,
                "socket_keepalive_options": keepalive_options(),
            }
        return dict(
            socket_connect_timeout=CONNECT_TIMEOUT,
            # A reply stalled half-way is a dead connection too.
            socket_timeout=max(2 * self.health_interval, CONNECT_TIMEOUT),
            # Our own PING with a deadline replaces redis-py's health check,
            # which sends a PING but never checks that the answer came.
            health_check_interval=0,
            # Reconnecting is ours to do: redis-py's own retry would hide a gap.
            retry=Retry(NoBackoff(), 0),
            **options,
        )

    def _run(self) -> None:
        while True:
            client = pubsub = None
            try:
                client = self._client()
                pubsub = client.pubsub(ignore_subscribe_messages=False)
                self._subscribe(pubsub)
                self._pump(pubsub)
            except (redis.RedisError, OSError) as e:
                self._lost(e)
            except Exception:
                # A bug of ours: start over on a fresh connection, never stop.
                self.hooks.count("listener_restarts")
                self._failure_log.log(
                    logging.ERROR,
                    "the Redis listener failed; subscribing again in %.1fs",
                    self._backoff.delay,
                    exc_info=True,
                )
            finally:
                self.live = False
                self._resync_due = True
                self.first_attempt.set()
                if pubsub is not None:
                    pubsub.close()
                if client is not None:
                    client.close()
                self._down()
            gevent.sleep(self._backoff.next())

    def _subscribe(self, pubsub: redis.client.PubSub) -> None:
        pubsub.psubscribe(self.pattern)
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            message = pubsub.get_message(timeout=left)
            if message is not None and message["type"] == "psubscribe":
                break
        else:
            raise redis.TimeoutError("no PSUBSCRIBE confirmation")
        self._joined()

    def _joined(self) -> None:
        """Subscribed: live, and the clients resync if this follows a loss."""
        self.live = True
        self.first_attempt.set()
        self._backoff.reset()
        if self._resync_due:
            self._resync_due = False
            logger.warning("Redis subscription to %s is back", self.where)
            self.hooks.resync()
        else:
            logger.info("subscribed to %s at %s", self.pattern, self.where)
            if self.hooks.subscribed is not None:
                self.hooks.subscribed()

    @property
    def where(self) -> str:
        """Where it subscribes, for log lines (no password)."""
        return redacted(self.url)

    def _down(self) -> None:
        """The subscription ended (any reason); it is retried after a backoff."""

    def _lost(self, error: Exception) -> None:
        # The first failure since a success is worth a warning; the retries not.
        log = logger.warning if self._backoff.fresh else logger.debug
        log(
            "Redis subscription at %s lost or refused (%s); retrying in %.1fs",
            self.where,
            error,
            self._backoff.delay,
        )

    def _pump(self, pubsub: redis.client.PubSub) -> None:
        handled = 0
        liveness = Liveness(self.health_interval, time.monotonic())
        idle = self.hooks.idle
        kind = self.message_type
        while True:
            # can_read(0) only looks: redis-py's buffer, then one recv that
            # returns at once; its errors are the connection's, as get_message's.
            if idle is not None and not pubsub.connection.can_read(timeout=0):
                idle()
            message = self._next(pubsub, liveness.wait(time.monotonic()))
            now = time.monotonic()
            if message is not None:
                liveness.heard(now)
                if message["type"] != kind:
                    self._notice(pubsub, message)
                    continue
                if message["channel"] in self.controls:
                    self._control(message["channel"], message["data"])
                    continue
                self._handle(message["channel"], message["data"])
                handled += 1
                if handled % YIELD_EVERY == 0:
                    # redis-py hands out buffered messages without yielding.
                    gevent.sleep(0)
                continue
            if liveness.dead(now):
                self.hooks.count("redis_ping_timeouts")
                raise Stalled(
                    f"no answer to PING within {self.health_interval:g}s "
                    "(a partition, or Redis stopped answering)"
                )
            if liveness.ping_due(now):
                pubsub.ping(PING_TOKEN)
                liveness.pinged(now)

    def _next(self, pubsub: redis.client.PubSub, timeout: float) -> dict | None:
        """The next message within ``timeout`` (None: none came)."""
        return pubsub.get_message(timeout=timeout)

    def _notice(self, pubsub: redis.client.PubSub, message: dict) -> None:
        """A message that is no published one (a pong, a subscription's change):
        a cluster's listener learns from these which channels it holds, and
        that a slot moved away."""

    def _control(self, channel: bytes, body: bytes) -> None:
        """Hand a control message to its handler; a failure ends only that one."""
        name = channel.decode("utf-8", "replace")
        if channel not in self.quiet:
            logger.info("%s requested on %s", name.rpartition(":")[2], name)
        try:
            self.controls[channel](body)
        except Exception:
            self._failure_log.log(
                logging.ERROR,
                "a control message on %s failed",
                name,
                exc_info=True,
            )

    def _handle(self, channel: bytes, body: bytes) -> None:
        """Hand one message to the hub; nothing about it may end the pump."""
        try:
            if len(body) > self.max_update_bytes:
                raise ValueError(
                    f"{len(body):,} bytes, over MAX_UPDATE_BYTES "
                    f"({self.max_update_bytes:,})"
                )
            update = Update.decode(body)
        except ValueError as e:
            self.hooks.count("updates_invalid")
            self._invalid_log.log(
                logging.WARNING,
                "dropped an invalid message on %s: %s",
                channel.decode("utf-8", "replace"),
                str(e)[:REASON_CHARS],
            )
            return
        try:
            self.hooks.update(update)
        except Exception:
            self.hooks.count("updates_failed")
            self._failure_log.log(
                logging.ERROR,
                "skipped an update of %s on %s after an unexpected error",
                update.url[:REASON_CHARS],
                channel.decode("utf-8", "replace"),
                exc_info=True,
            )
