"""The gateway's one Redis subscription, kept alive, feeding the hub.

One greenlet, one dedicated pub/sub connection, PSUBSCRIBE ``CHANNEL_PREFIX*``.
When Redis goes away it logs, retries with exponential backoff capped at
``MAX_BACKOFF``, subscribes again and then tells every client to resync, since
updates published meanwhile were lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import gevent
import gevent.event
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from pushy.connections import client_from_url, redacted
from pushy.messages import Update

logger = logging.getLogger(__name__)

FIRST_BACKOFF = 0.1
MAX_BACKOFF = 5.0
# How long one wait for a message lasts; also how often redis-py may health-check.
POLL_TIMEOUT = 1.0
HEALTH_CHECK_INTERVAL = 10
CONNECT_TIMEOUT = 2.0
# In a burst, the writers get the loop after this many updates: often enough that
# queues do not fill, rarely enough that each write carries several frames.
YIELD_EVERY = 32


class Listener:
    """Subscribes to ``pattern`` at ``url``; calls ``on_update`` and ``on_resync``."""

    def __init__(
        self,
        url: str,
        pattern: str,
        on_update: Callable[[Update], object],
        on_resync: Callable[[], object],
        on_invalid: Callable[[], object],
    ) -> None:
        self.url = url
        self.pattern = pattern
        self.on_update = on_update
        self.on_resync = on_resync
        self.on_invalid = on_invalid
        self.live = False
        self.reconnects = 0
        # Set once the first attempt to subscribe has succeeded or failed.
        self.first_attempt = gevent.event.Event()
        self._greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill()

    def _run(self) -> None:
        backoff, failures = FIRST_BACKOFF, 0
        while True:
            client = client_from_url(
                self.url,
                socket_connect_timeout=CONNECT_TIMEOUT,
                socket_keepalive=True,
                health_check_interval=HEALTH_CHECK_INTERVAL,
                # Reconnecting is ours to do: redis-py's own retry would hide a gap.
                retry=Retry(NoBackoff(), 0),
            )
            pubsub = client.pubsub(ignore_subscribe_messages=False)
            try:
                self._subscribe(pubsub, resync=failures > 0)
                backoff, failures = FIRST_BACKOFF, 0
                self._pump(pubsub)
            except (redis.RedisError, OSError) as e:
                failures += 1
                self._lost(e, failures, backoff)
                gevent.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
            finally:
                self.live = False
                pubsub.close()
                client.close()

    def _subscribe(self, pubsub: redis.client.PubSub, resync: bool) -> None:
        pubsub.psubscribe(self.pattern)
        while True:
            message = pubsub.get_message(timeout=CONNECT_TIMEOUT)
            if message is None:
                raise redis.TimeoutError("no PSUBSCRIBE confirmation")
            if message["type"] == "psubscribe":
                break
        self.live = True
        self.first_attempt.set()
        if resync:
            self.reconnects += 1
            logger.warning("Redis subscription to %s is back", redacted(self.url))
            self.on_resync()
        else:
            logger.info("subscribed to %s at %s", self.pattern, redacted(self.url))

    def _lost(self, error: Exception, failures: int, backoff: float) -> None:
        self.first_attempt.set()
        log = logger.warning if failures == 1 else logger.debug
        log(
            "Redis subscription at %s lost or refused (%s); retrying in %.1fs",
            redacted(self.url),
            error,
            backoff,
        )

    def _pump(self, pubsub: redis.client.PubSub) -> None:
        handled = 0
        while True:
            message = pubsub.get_message(timeout=POLL_TIMEOUT)
            if message is not None and message["type"] == "pmessage":
                self._handle(message["data"])
                handled += 1
                if handled % YIELD_EVERY == 0:
                    # redis-py hands out buffered messages without yielding.
                    gevent.sleep(0)

    def _handle(self, body: bytes) -> None:
        try:
            update = Update.decode(body)
        except ValueError as e:
            logger.debug("ignoring a message that is not an update: %s", e)
            self.on_invalid()
            return
        self.on_update(update)
