"""Refused updates: counted, and logged at a bounded rate per kind.

An update pushy cannot publish as built (``updates.Refusal``: over
``MAX_UPDATE_BYTES``, or a model method that raised or returned junk) still
reaches pages, without its data or as a resync of every page. The refusal
itself is a bug in the site's code, so it is logged; but a model that fails on
every save must not flood the log, nor may its later failures go unmentioned.
Per kind (reason and model) the first refusal is logged at once, in full; then
at most one line a minute says how many were left out, written by the sender
thread (``flush_due``) even when no further refusal of that kind comes.

Every refusal is counted here, in-process (``counts``), when it happens; the
publisher also counts the refusals of committed changes in Redis
(``stats_key()``, a hash with one field per reason), in the pipeline that
publishes what stands in for them, so that gateways can show the total of all
processes (``refusal_counts``).
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time

import redis

from pushy import conf
from pushy.exceptions import InvalidUpdate
from pushy.logs import Throttled
from pushy.updates import REASONS, Refusal

logger = logging.getLogger(__name__)

# Seconds between two lines about one kind of refusal.
LOG_INTERVAL = 60.0

# Refusals in this process since it started, by reason (updates.REASONS).
counts: collections.Counter[str] = collections.Counter()


class _Kind:
    """One kind's log line (at most one per LOG_INTERVAL) and the last left out."""

    __slots__ = ("line", "last")

    def __init__(self) -> None:
        self.line = Throttled(logger, LOG_INTERVAL)
        self.last: Refusal | None = None


_lock = threading.Lock()
_kinds: dict[tuple[str, str], _Kind] = {}


def stats_key() -> str:
    """The Redis hash counting refusals by reason (a key, not a channel)."""
    return conf.get("CHANNEL_PREFIX") + ":stats:refused"


def refusal_counts(client: redis.Redis) -> dict[str, int]:
    """Refusals counted in Redis by all publishers, per reason (0 for none yet)."""
    found = {
        (k.decode() if isinstance(k, bytes) else k): int(v)
        for k, v in client.hgetall(stats_key()).items()
    }
    return {reason: found.get(reason, 0) for reason in REASONS} | found


def note(refusal: Refusal) -> bool:
    """Count ``refusal`` and log it unless its kind was logged within a minute.

    True when it was left out of the log: a line is owed (``next_due``).
    """
    now = time.monotonic()
    key = (refusal.reason, refusal.model)
    with _lock:
        counts[refusal.reason] += 1
        kind = _kinds.get(key)
        if kind is None:
            kind = _kinds[key] = _Kind()
        if not kind.line.due(now):
            kind.last = refusal
            return True
        left_out = kind.line.take_suppressed()
        kind.last = None
    _log_one(refusal, left_out)
    return False


def next_due(now: float | None = None) -> float | None:
    """Seconds until a left-out count must be logged; None if none is owed."""
    now = time.monotonic() if now is None else now
    with _lock:
        due = [
            k.line.logged_at + LOG_INTERVAL
            for k in _kinds.values()
            if k.line.suppressed
        ]
    return max(0.0, min(due) - now) if due else None


def flush_due(now: float | None = None) -> None:
    """Log the left-out counts whose minute is over (the sender thread calls it)."""
    now = time.monotonic() if now is None else now
    owed = []
    with _lock:
        for kind in _kinds.values():
            line = kind.line
            if line.suppressed and now - line.logged_at >= LOG_INTERVAL:
                seconds = now - line.logged_at
                line.due(now)  # the line written below
                owed.append((line.take_suppressed(), kind.last, seconds))
                kind.last = None
    for left_out, last, seconds in owed:
        _log_left_out(left_out, last, seconds)


def reset() -> None:
    """Forget counts and what was logged (tests: each sees its first line)."""
    with _lock:
        counts.clear()
        _kinds.clear()


def _outcome(refusal: Refusal) -> str:
    if refusal.stand_in is not None:
        return "published without its data (its pages refetch the object)"
    return "not published; every page is told to resync instead"


def _log_one(refusal: Refusal, left_out: int) -> None:
    error = refusal.error
    own_fault = not isinstance(error, InvalidUpdate)  # the model's method raised
    cause = f"{type(error).__name__}: {error}" if own_fault else str(error)
    more = f" ({left_out} more of this kind since the last line)" if left_out else ""
    logger.error(
        "pushy refused the %s of %s pk=%s (%s): %s; %s%s%s",
        refusal.event,
        refusal.model,
        refusal.pk,
        refusal.reason,
        cause,
        _outcome(refusal),
        "; fix the model method in the traceback" if own_fault else "",
        more,
        exc_info=error if own_fault else None,
    )


def _log_left_out(left_out: int, last: Refusal, seconds: float) -> None:
    logger.error(
        "pushy refused %d more update%s of %s (%s) in the last %s, left out of "
        "the log; the last: the %s of pk=%s, %s: %s",
        left_out,
        "" if left_out == 1 else "s",
        last.model,
        last.reason,
        f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s",
        last.event,
        last.pk,
        _outcome(last),
        last.error,
    )


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # a parent thread may have held it


os.register_at_fork(after_in_child=_after_fork_in_child)
