"""Publishing updates to Redis, once the transaction that made them commits.

``publish_on_commit()`` is what signals and ``pushy.notify`` use. Inside a
transaction it collects the updates of that transaction, coalescing several
changes of one object into one, and hands them to the process's sender
(pushy/sending.py) after the commit: in commit order, waiting for Redis at most
``PUBLISH_TIMEOUT``. A rolled-back transaction or savepoint publishes nothing
of what it did. Publishing never raises into the caller's save.

Every update is checked before it is sent (``checked_body``: JSON without
NaN/Infinity, at most ``MAX_UPDATE_BYTES``), so nothing a gateway would have to
drop reaches Redis. What the signals could not build as it should be
(``updates.Refusal``) still reaches pages: its data-less stand-in is published
like any update, or, when not even that exists, every page is told to resync;
the refusal is logged at a bounded rate and counted (pushy/refusals.py).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections

from pushy import refusals, sending
from pushy.exceptions import PublishError
from pushy.messages import Update
from pushy.sending import get_client, redacted_redis_url, reset_client
from pushy.updates import Refusal, checked_body, checked_or_refused, fold

__all__ = [
    "PublishError",
    "describe",
    "get_client",
    "publish",
    "publish_on_commit",
    "publish_quietly",
    "redacted_redis_url",
    "reset_client",
]

logger = logging.getLogger(__name__)


def _send(
    updates: list[Update], refused: Sequence[Refusal] = (), quiet: bool = False
) -> list[int]:
    """Hand updates to this process's sender; see ``publish``/``publish_quietly``."""
    sender = sending.get()
    if quiet:
        sender.publish_quietly(updates, refused)
        return []
    return sender.publish(updates)


# The function that really sends; pushy.testing swaps it to capture updates
# (and so keeps refusals' counts and resyncs off Redis too).
_sender: Callable[..., list[int]] = _send


def publish(updates: Iterable[Update]) -> list[int]:
    """Publish now; returns how many gateways got each.

    The updates join the process's queue behind whatever waits there (a save's
    updates are never overtaken), and this waits until Redis confirmed them, up
    to ``sending.SYNC_TIMEOUT`` (3 s). Raises InvalidUpdate (before anything is
    sent) for an update that is not JSON or is over MAX_UPDATE_BYTES, and
    PublishError when Redis did not confirm them: updates that cannot have
    reached Redis are withdrawn (not published); those that may have stay
    queued and go out in order when Redis answers, as the message says.
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


def note_refusal(refusal: Refusal) -> None:
    """Count and log a refusal now (where it happened, at a bounded rate)."""
    if refusals.note(refusal):
        sending.get().refusal_noted()  # its left-out line is owed within a minute


def publish_quietly(items: Iterable[Update | Refusal]) -> None:
    """Publish, waiting for Redis at most PUBLISH_TIMEOUT; never raise.

    A save must never break on Redis, nor wait long for it: what Redis has not
    confirmed in time stays queued and goes out in order (pushy/sending.py).
    A Refusal (already logged) sends its stand-in, or makes every page resync.
    """
    updates: list[Update] = []
    refused: list[Refusal] = []
    for item in items:
        if isinstance(item, Refusal):
            refused.append(item)
            item = item.stand_in
        if item is not None:
            updates.append(item)
    _publish_quietly(updates, refused)


def _publish_quietly(updates: list[Update], refused: list[Refusal]) -> None:
    checked = []
    for update in updates:
        result = checked_or_refused(update)
        if isinstance(result, Refusal):  # MAX_UPDATE_BYTES changed, or by hand
            note_refusal(result)
            refused.append(result)
            result = result.stand_in
        if result is not None:
            checked.append(result)
    if not checked and not refused:
        return
    try:
        _sender(checked, refused, quiet=True)
    except Exception:  # a bug, or a capture of the user's; never the save's
        logger.exception("pushy failed to hand %s to its sender", describe(checked))


def coalesce(previous: Update | None, new: Update) -> Update | None:
    """One update meaning ``previous`` then ``new``; None when nothing is left."""
    event = fold(None if previous is None else previous.event, new.event)
    if event is None:
        return None
    return new if event == new.event else new.replace(event=event)


class _Entry:
    """Queued updates; alive once their on_commit hook ran (no savepoint dropped it)."""

    __slots__ = ("updates", "alive", "hook")

    def __init__(self, updates: list[Update | Refusal]) -> None:
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

    def add(self, updates: list[Update | Refusal]) -> None:
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
        _publish_quietly(*_coalesced([e for e in self.entries if e.alive]))

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
        return _coalesced(taken)[0]


def _coalesced(entries: list[_Entry]) -> tuple[list[Update], list[Refusal]]:
    """The entries' updates coalesced per object, and their refusals.

    A refusal's stand-in coalesces like any update; the refusal is kept apart,
    to be counted (and, without a stand-in, to make every page resync).
    """
    merged: dict[tuple[str, Any], Update | None] = {}
    refused: list[Refusal] = []
    for entry in entries:
        for item in entry.updates:
            if isinstance(item, Refusal):
                refused.append(item)
                item = item.stand_in
                if item is None:
                    continue
            key = (item.model, item.pk)
            merged[key] = coalesce(merged.pop(key, None), item)
    return [u for u in merged.values() if u is not None], refused


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


def publish_on_commit(
    updates: Iterable[Update | Refusal], using: str | None = None
) -> None:
    """Publish once the transaction on ``using`` commits (at once in autocommit).

    A Refusal (from ``updates.build_or_refuse``) travels like an update: its
    stand-in is coalesced and sent, and it is counted, only if the change commits.
    """
    connection = connections[using or DEFAULT_DB_ALIAS]
    if not connection.in_atomic_block:
        publish_quietly(updates)
        return
    batch = list(updates)
    if batch:
        _batches.current(connection).add(batch)
