"""Locks that the event loop and the database pool's threads can share.

After ``monkey.patch_all()`` every ``threading.Lock`` and ``RLock`` is a gevent
lock, and a gevent lock contended by two native threads, or by one and the
event loop, can leave its waiters asleep for good once it is free (gevent
issue 2013: the release is not told to the other thread's hub). The gateway's
pool threads (questions.py) run the site's views, and a view takes such locks
many times: asgiref's ``Local`` on every translation and URLconf lookup, the
``request_started`` signal's, every logging handler's, an import's. Four pool
threads logging at once stopped within seconds, each in ``LockType.acquire``;
in the gateway, a question stuck that way keeps its thread, its URL is refused
"timeout" until the process restarts, and the pool shrinks by one.

So ``install()``, run right after monkey-patching and before Django, logging's
configuration or redis-py are imported, makes ``threading.Lock`` and
``threading.RLock`` build ``CooperativeLock`` (and an RLock on it), makes the
import system's module locks one, and gives logging's module lock and its
existing handlers one. A ``CooperativeLock`` is a native lock: taken at once
when free, waited for natively in a pool thread, and, in the loop's thread,
waited for by polling with ``gevent.sleep`` so that the other greenlets
(among them the one holding it) run meanwhile. Nothing is woken across
threads by gevent, so nothing can be missed.
"""

from __future__ import annotations

import _thread
import importlib._bootstrap
import logging
import threading
import time
from typing import Any

import gevent
from gevent import monkey
from gevent._hub_local import get_hub_if_exists

# A lock of the interpreter, never gevent's (public: questions.py counts with one).
native_lock = monkey.get_original("_thread", "allocate_lock")
_native_ident = monkey.get_original("_thread", "get_ident")

# The loop's thread (the one that installs): set by install().
_loop_thread: int | None = None
# Polling in the loop's thread: from a bare yield up to this many seconds.
MAX_POLL = 0.005


class CooperativeLock:
    """A native lock that a greenlet of the loop waits for without blocking
    the loop (see the module's docstring)."""

    __slots__ = ("_native", "__weakref__")

    def __init__(self) -> None:
        self._native = native_lock()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self._native.acquire(False):
            return True
        if not blocking:
            if timeout != -1:
                raise ValueError("can't specify a timeout for a non-blocking call")
            return False
        if timeout < 0 and timeout != -1:
            raise ValueError("timeout value must be a non-negative number")
        if not _may_yield():
            return self._native.acquire(True, timeout)
        return self._poll(None if timeout == -1 else time.monotonic() + timeout)

    def _poll(self, deadline: float | None) -> bool:
        pause = 0.0
        while True:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            gevent.sleep(pause)
            if self._native.acquire(False):
                return True
            pause = min(MAX_POLL, pause * 2 or 0.0001)

    def release(self) -> None:
        self._native.release()

    def locked(self) -> bool:
        return self._native.locked()

    def _at_fork_reinit(self) -> None:
        self._native = native_lock()

    __enter__ = acquire

    def __exit__(self, *exc: object) -> None:
        self._native.release()

    def __repr__(self) -> str:
        state = "locked" if self.locked() else "unlocked"
        return f"<{state} pushy CooperativeLock at {id(self):#x}>"


class CooperativeRLock:
    """A reentrant ``CooperativeLock``, owned by a greenlet (the loop's
    greenlets exclude one another, as gevent's RLock made them), with what
    ``threading.Condition`` asks of an RLock."""

    __slots__ = ("_block", "_owner", "_count", "__weakref__")

    def __init__(self) -> None:
        self._block = CooperativeLock()
        self._owner: int | None = None
        self._count = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        me = _greenlet_ident()
        if self._owner == me:
            self._count += 1
            return True
        if not self._block.acquire(blocking, timeout):
            return False
        self._owner, self._count = me, 1
        return True

    __enter__ = acquire

    def release(self) -> None:
        if self._owner != _greenlet_ident():
            raise RuntimeError("cannot release un-acquired lock")
        self._count -= 1
        if not self._count:
            self._owner = None
            self._block.release()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def locked(self) -> bool:
        return self._block.locked()

    def _is_owned(self) -> bool:
        return self._owner == _greenlet_ident()

    def _release_save(self) -> tuple[int, int | None]:
        if not self._count:
            raise RuntimeError("cannot release un-acquired lock")
        state = (self._count, self._owner)
        self._owner, self._count = None, 0
        self._block.release()
        return state

    def _acquire_restore(self, state: tuple[int, int | None]) -> None:
        self._block.acquire()
        self._count, self._owner = state

    def _at_fork_reinit(self) -> None:
        self._block._at_fork_reinit()
        self._owner, self._count = None, 0

    def __repr__(self) -> str:
        state = "locked" if self.locked() else "unlocked"
        return f"<{state} pushy CooperativeRLock count={self._count} at {id(self):#x}>"


def _greenlet_ident() -> int:
    """The current greenlet (in a pool thread: the thread's own)."""
    return id(gevent.getcurrent())


def _may_yield() -> bool:
    """Whether the caller is a greenlet of the loop's thread other than the
    hub: one that can let the others run while it waits."""
    if _native_ident() != _loop_thread:
        return False
    hub = get_hub_if_exists()
    return hub is not None and gevent.getcurrent() is not hub


class _ImportThreads:
    """What ``importlib._bootstrap`` knows as ``_thread``: its module locks are
    cooperative, the rest (``get_ident``: per greenlet) is gevent's."""

    allocate_lock = CooperativeLock

    def __getattr__(self, name: str) -> Any:
        return getattr(_thread, name)


def install() -> None:
    """Make the locks made from now on, the import system's and logging's,
    cooperative. Idempotent; in the gateway's process only (after patch_all)."""
    global _loop_thread
    if threading.Lock is CooperativeLock:
        return
    _loop_thread = _native_ident()
    threading.Lock = CooperativeLock  # type: ignore[misc]
    threading.RLock = CooperativeRLock  # type: ignore[misc,assignment]
    importlib._bootstrap._thread = _ImportThreads()  # type: ignore[attr-defined]
    logging._lock = CooperativeRLock()  # type: ignore[attr-defined]
    for ref in list(logging._handlerList):  # type: ignore[attr-defined]
        handler = ref()
        if handler is not None:
            handler.lock = CooperativeRLock()
