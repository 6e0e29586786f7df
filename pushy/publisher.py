"""Publishing updates to Redis, once the transaction that made them commits.

``publish_on_commit()`` is what signals and ``pushy.notify`` use. Inside a
transaction it collects the updates of that transaction, coalescing several
changes of one object into one, and sends them in one pipeline after the commit.
A rolled-back transaction or savepoint publishes nothing of what it did.
Publishing never raises into the caller's save: a Redis failure is logged.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

import redis
from django.core.signals import setting_changed
from django.db import DEFAULT_DB_ALIAS, connections
from redis.backoff import NoBackoff
from redis.retry import Retry

from pushy import conf
from pushy.connections import client_from_url, redacted
from pushy.exceptions import PublishError
from pushy.messages import CREATE, DELETE, UPDATE, Update

logger = logging.getLogger(__name__)

# Short, so a Redis that is down or unreachable costs a save at most this long.
CONNECT_TIMEOUT = 1.0
SOCKET_TIMEOUT = 2.0

_client_lock = threading.Lock()
_client: redis.Redis | None = None


def get_client() -> redis.Redis:
    """The shared Redis client, created on first use from ``REDIS_URL``."""
    global _client
    with _client_lock:
        if _client is None:
            _client = client_from_url(
                conf.get("REDIS_URL"),
                socket_connect_timeout=CONNECT_TIMEOUT,
                socket_timeout=SOCKET_TIMEOUT,
                retry=Retry(NoBackoff(), 0),
            )
        return _client


def reset_client() -> None:
    """Drop the client and its pool (after REDIS_URL changed)."""
    global _client
    with _client_lock:
        old, _client = _client, None
    if old is not None:
        old.close()


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == conf.SETTING_NAME:
        reset_client()


setting_changed.connect(_on_setting_changed, dispatch_uid="pushy.publisher.reset")


def redacted_redis_url() -> str:
    """``REDIS_URL`` without its password, for log lines."""
    return redacted(conf.get("REDIS_URL"))


def _send(updates: list[Update]) -> list[int]:
    """PUBLISH every update in one round trip; the receiver count of each."""
    try:
        pipe = get_client().pipeline(transaction=False)
        for update in updates:
            pipe.publish(update.channel, update.encode())
        return pipe.execute()
    except redis.RedisError as e:
        raise PublishError(f"Redis at {redacted_redis_url()}: {e}") from e


# The function that really sends; pushy.testing swaps it to capture updates.
_sender: Callable[[list[Update]], list[int]] = _send


def publish(updates: Iterable[Update]) -> list[int]:
    """Publish now, raising PublishError; returns how many gateways got each."""
    batch = list(updates)
    if not batch:
        return []
    return _sender(batch)


def describe(updates: list[Update], limit: int = 5) -> str:
    names = [f"{u.model} pk={u.pk}" for u in updates[:limit]]
    if len(updates) > limit:
        names.append(f"and {len(updates) - limit} more")
    return ", ".join(names)


def publish_quietly(updates: Iterable[Update]) -> None:
    """Publish, logging (not raising) a failure: a save must never break on Redis."""
    batch = list(updates)
    try:
        publish(batch)
    except PublishError as e:
        logger.error("pushy could not publish %s: %s", describe(batch), e)
    except Exception:
        logger.exception("pushy could not publish %s", describe(batch))


def coalesce(previous: Update | None, new: Update) -> Update | None:
    """One update meaning ``previous`` then ``new``; None when nothing is left."""
    if previous is None:
        return new
    if previous.event == CREATE:
        return None if new.event == DELETE else new.replace(event=CREATE)
    if previous.event == DELETE and new.event == CREATE:
        # Deleted and made again under the same pk: to a subscriber, it changed.
        return new.replace(event=UPDATE)
    return new


class _Entry:
    """Queued updates; alive once their on_commit hook ran (no savepoint dropped it)."""

    __slots__ = ("updates", "alive")

    def __init__(self, updates: list[Update]) -> None:
        self.updates = updates
        self.alive = False

    def survive(self) -> None:
        self.alive = True


class _Batch:
    """The updates of one transaction on one database connection."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.entries: list[_Entry] = []
        self.hook = (set(), self.flush, False)

    def is_pending(self) -> bool:
        # A rollback of the whole transaction clears run_on_commit, our hook too.
        hooks = self.connection.run_on_commit
        if hooks and hooks[-1] is self.hook:  # the usual case, in O(1)
            return True
        return any(hook is self.hook for hook in hooks)

    def add(self, updates: list[Update]) -> None:
        entry = _Entry(updates)
        self.entries.append(entry)
        # Django drops this hook if a savepoint around this point is rolled back.
        self.connection.on_commit(entry.survive)
        self._move_flush_last()

    def _move_flush_last(self) -> None:
        # The flush must run after every entry's survive() hook, and must not be
        # dropped by a savepoint rollback (its sids are empty), so it is kept at the
        # end of Django's hook list. run_on_commit holds (sids, func, robust) since
        # Django 4.2; tests/test_publishing.py covers savepoints to catch changes.
        hooks = self.connection.run_on_commit
        if len(hooks) >= 2 and hooks[-2] is self.hook:
            # Only the hook just added follows the flush: swap, so a transaction
            # of many saves stays linear.
            hooks[-2], hooks[-1] = hooks[-1], hooks[-2]
            return
        hooks[:] = [hook for hook in hooks if hook is not self.hook]
        hooks.append(self.hook)

    def flush(self) -> None:
        _batches.by_alias.pop(self.connection.alias, None)
        merged: dict[tuple[str, Any], Update | None] = {}
        for entry in self.entries:
            if not entry.alive:
                continue
            for update in entry.updates:
                key = (update.model, update.pk)
                merged[key] = coalesce(merged.pop(key, None), update)
        publish_quietly(u for u in merged.values() if u is not None)


class _Batches(threading.local):
    def __init__(self) -> None:
        self.by_alias: dict[str, _Batch] = {}

    def current(self, connection: Any) -> _Batch:
        batch = self.by_alias.get(connection.alias)
        if batch is None or not batch.is_pending():
            batch = self.by_alias[connection.alias] = _Batch(connection)
        return batch


_batches = _Batches()


def publish_on_commit(updates: Iterable[Update], using: str | None = None) -> None:
    """Publish once the transaction on ``using`` commits (at once in autocommit)."""
    connection = connections[using or DEFAULT_DB_ALIAS]
    if not connection.in_atomic_block:
        publish_quietly(updates)
        return
    batch = list(updates)
    if batch:
        _batches.current(connection).add(batch)
