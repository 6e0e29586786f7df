"""Publishing updates to Redis, once the transaction that made them commits.

``publish_on_commit()`` is what signals and ``pushy.notify`` use. Inside a
transaction it collects the updates of that transaction, coalescing several
changes of one object into one, and sends them in one pipeline after the commit.
A rolled-back transaction or savepoint publishes nothing of what it did.
Publishing never raises into the caller's save: a Redis failure is logged.
Every update is checked before it is sent (``checked_body``: JSON without
NaN/Infinity, at most ``MAX_UPDATE_BYTES``), so nothing a gateway would have to
drop ever reaches Redis.
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import redis
from django.core.signals import setting_changed
from django.db import DEFAULT_DB_ALIAS, connections
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError
from redis.retry import Retry

from pushy import conf, versions
from pushy.exceptions import InvalidUpdate, PublishError
from pushy.messages import CREATE, DELETE, UPDATE, Update, checked_body
from pushy.redis_clients import client_from_url, redacted

logger = logging.getLogger(__name__)

# Short, so a Redis that is down or unreachable costs a save at most this long.
CONNECT_TIMEOUT = 1.0
SOCKET_TIMEOUT = 2.0

# Names this process's sends in Redis (versions.sender_key).
SENDER = uuid.uuid4().hex

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
    """PUBLISH every update in one round trip; the receiver count of each.

    Each PUBLISH runs inside ``versions.PUBLISH_SCRIPT``, which gives the update
    its version in the same step (docs/decisions.md, "Versions"). The script is
    called by its SHA; a Redis that does not know it yet (first use, restart)
    answers NOSCRIPT, and those updates are sent again once it is loaded.
    """
    try:
        client = get_client()
        results = _run_script(client, updates)
        missing = [isinstance(r, NoScriptError) for r in results]
        if any(missing):
            client.script_load(versions.PUBLISH_SCRIPT)
            retry = list(itertools.compress(updates, missing))
            again = iter(_run_script(client, retry))
            results = [
                next(again) if m else r for m, r in zip(missing, results, strict=True)
            ]
        refused = [isinstance(r, redis.ResponseError) for r in results]
        if any(refused):
            plain = iter(_publish_plain(client, updates, results, refused))
            results = [
                next(plain) if m else r for m, r in zip(refused, results, strict=True)
            ]
        for result in results:
            if isinstance(result, Exception):
                raise result
        return [int(r) if isinstance(r, int) else int(r[0]) for r in results]
    except redis.RedisError as e:
        raise PublishError(f"Redis at {redacted_redis_url()}: {e}") from e


_last_script_warning = 0.0


def _publish_plain(
    client: redis.Redis, updates: list[Update], results: list, refused: list[bool]
) -> list[Any]:
    """PUBLISH without a version the updates whose script Redis refused.

    A Redis that runs no scripts (a cluster node not owning the version keys'
    slot, an ACL without EVALSHA) must not stop updates: they go out as before
    versions, and clients resync those URLs after a reconnect. Logged at most
    once a minute.
    """
    global _last_script_warning
    now = time.monotonic()
    if now - _last_script_warning >= 60:
        _last_script_warning = now
        error = next(r for r, m in zip(results, refused, strict=True) if m)
        logger.warning(
            "Redis at %s refused pushy's version script (%s): publishing without "
            "versions; reconnecting pages will resync every URL",
            redacted_redis_url(),
            error,
        )
    pipe = client.pipeline(transaction=False)
    for update in itertools.compress(updates, refused):
        pipe.publish(update.channel, update.encode())
    return pipe.execute()


def _run_script(client: redis.Redis, updates: list[Update]) -> list[Any]:
    """EVALSHA the publish script for each update, in one pipeline."""
    ttl = int(conf.get("VERSION_TTL"))
    keys = [versions.book_key(), versions.sender_key(SENDER)]
    pipe = client.pipeline(transaction=False)
    for update in updates:
        args = versions.publish_args(
            ttl, update.channel, update.encode(), update.url, update.collection, ""
        )
        pipe.evalsha(versions.PUBLISH_SHA, len(keys), *keys, *args)
    return pipe.execute(raise_on_error=False)


# The function that really sends; pushy.testing swaps it to capture updates.
_sender: Callable[[list[Update]], list[int]] = _send


def publish(updates: Iterable[Update]) -> list[int]:
    """Publish now; returns how many gateways got each.

    Raises InvalidUpdate (before anything is sent) for an update that is not
    JSON or is over MAX_UPDATE_BYTES, PublishError when Redis fails.
    """
    batch = list(updates)
    if not batch:
        return []
    for update in batch:
        checked_body(update)  # also when captured by pushy.testing
    return _sender(batch)


def describe(updates: list[Update], limit: int = 5) -> str:
    names = [f"{u.model} pk={u.pk}" for u in updates[:limit]]
    if len(updates) > limit:
        names.append(f"and {len(updates) - limit} more")
    return ", ".join(names)


def publish_quietly(updates: Iterable[Update]) -> None:
    """Publish, logging (not raising) a failure: a save must never break on Redis.

    An invalid update is left out and logged; the others of the batch still go.
    """
    batch = []
    for update in updates:
        try:
            checked_body(update)
        except InvalidUpdate as e:
            logger.error("pushy did not publish %s: %s", describe([update]), e)
        else:
            batch.append(update)
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

    __slots__ = ("updates", "alive", "hook")

    def __init__(self, updates: list[Update]) -> None:
        self.updates = updates
        self.alive = False
        # One bound method, kept, so it can be found again in run_on_commit by
        # identity (each attribute access would make a new one).
        self.hook = self.survive

    def survive(self) -> None:
        self.alive = True


class _Batch:
    """The updates of one transaction on one database connection."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.entries: list[_Entry] = []
        self.adds = 0
        # The newest flush hook's function; only it flushes (see add()).
        self.hook: Callable[[], None] | None = None

    def is_pending(self) -> bool:
        # A rollback of the whole transaction clears run_on_commit, our hook too.
        # Functions are compared: a savepoint rollback rebuilds the tuples.
        hooks = self.connection.run_on_commit
        if hooks and hooks[-1][1] is self.hook:  # the usual case, in O(1)
            return True
        return any(hook[1] is self.hook for hook in hooks)

    def add(self, updates: list[Update]) -> None:
        entry = _Entry(updates)
        self.entries.append(entry)
        self.adds += 1
        # Django drops this hook if a savepoint around this point is rolled back.
        self.connection.on_commit(entry.hook)
        # Then a flush hook after it, appended by hand with no savepoint ids so
        # that no rollback drops it; only the newest one flushes, so the flush
        # runs once, after every survive() hook. The list only grows at its end,
        # as captureOnCommitCallbacks expects (it runs the hooks past the length
        # it saw). run_on_commit holds (sids, func, robust) since Django 4.2;
        # tests/test_publishing.py covers savepoints to catch a change.
        self.hook = functools.partial(self._flush_if_newest, self.adds)
        self.connection.run_on_commit.append((set(), self.hook, False))

    def _flush_if_newest(self, serial: int) -> None:
        if serial == self.adds:
            self.flush()

    def flush(self) -> None:
        _batches.by_alias.pop(self.connection.alias, None)
        self.adds = -1  # flushed: older flush hooks stay no-ops
        publish_quietly(_coalesced([e for e in self.entries if e.alive]))

    def _listed_hooks(self) -> set[int]:
        return {id(hook[1]) for hook in self.connection.run_on_commit}

    def take_since(self, start: int) -> list[Update]:
        """Remove and return what entries ``start``... would publish at commit.

        For pushy.testing: the enclosing transaction (a TestCase's) may never
        commit. Entries a savepoint rollback dropped are left out.
        """
        listed = self._listed_hooks()
        taken = [e for e in self.entries[start:] if id(e.hook) in listed]
        del self.entries[start:]
        return _coalesced(taken)


def _coalesced(entries: list[_Entry]) -> list[Update]:
    merged: dict[tuple[str, Any], Update | None] = {}
    for entry in entries:
        for update in entry.updates:
            key = (update.model, update.pk)
            merged[key] = coalesce(merged.pop(key, None), update)
    return [u for u in merged.values() if u is not None]


class _Batches(threading.local):
    def __init__(self) -> None:
        self.by_alias: dict[str, _Batch] = {}

    def current(self, connection: Any) -> _Batch:
        batch = self.by_alias.get(connection.alias)
        if batch is None or not batch.is_pending():
            batch = self.by_alias[connection.alias] = _Batch(connection)
        return batch


_batches = _Batches()


def pending_marks() -> dict[_Batch, int]:
    """This thread's open batches, with how many entries each holds so far."""
    return {
        batch: len(batch.entries)
        for batch in _batches.by_alias.values()
        if batch.is_pending()
    }


def take_pending(marks: dict[_Batch, int]) -> list[Update]:
    """What this thread queued since ``marks`` in transactions still open.

    The updates are removed from their batches, so a later commit does not
    publish them again, and ``marks`` is moved past them.
    """
    taken: list[Update] = []
    for batch in list(_batches.by_alias.values()):
        if batch.is_pending():
            taken += batch.take_since(marks.get(batch, 0))
            marks[batch] = len(batch.entries)
    return taken


def publish_on_commit(updates: Iterable[Update], using: str | None = None) -> None:
    """Publish once the transaction on ``using`` commits (at once in autocommit)."""
    connection = connections[using or DEFAULT_DB_ALIAS]
    if not connection.in_atomic_block:
        publish_quietly(updates)
        return
    batch = list(updates)
    if batch:
        _batches.current(connection).add(batch)
