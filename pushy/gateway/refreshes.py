"""Background refreshes of cached authorization answers, out of the fan-out's way.

An answer in use is asked again in the last quarter of its life (permissions.py),
so busy entries do not expire under the hub's feet. A burst touches every
answer the burst before it made, all due at once; and a view run in a pool
thread takes the GIL from the event loop. So due refreshes wait in one queue
(sessions first: when one expires, every answer of its user waits for it), and
one greenlet starts them, at most one per pool thread, never within
``QUIET`` seconds of a fan-out. A refresh has the last quarter of the TTL to
run in; one that does not is asked when its entry is needed
(bench/results/PROFILE.md, section 12).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import gevent
import gevent.pool

from pushy.gateway.questions import MAX_REFRESHES_WAITING

# Seconds after a fan-out during which refreshes do not start.
QUIET = 0.05

# Runs one refresh: (key, compute, *args), in a greenlet of its own.
Run = Callable[..., None]


class Refreshes:
    """The refreshes due, started by ``run`` when the fan-out is quiet."""

    def __init__(self, run: Run, size: int) -> None:
        self.run = run
        self.size = size  # at most this many under way at once
        self.due: OrderedDict[Any, tuple[Callable, tuple]] = OrderedDict()
        self.quiet_from = 0.0
        self._starter: gevent.Greenlet | None = None

    def __contains__(self, key: Any) -> bool:
        return key in self.due

    def fanning_out(self, now: float) -> None:
        """An update is being fanned out: refreshes wait ``QUIET`` seconds."""
        self.quiet_from = now + QUIET

    def add(self, key: Any, compute: Callable, args: tuple, first: bool) -> None:
        """``key``'s question is due (``first``: ahead of the others); past
        MAX_REFRESHES_WAITING it is left to expire and be asked when needed."""
        if key in self.due or len(self.due) >= MAX_REFRESHES_WAITING:
            return
        self.due[key] = (compute, args)
        if first:
            self.due.move_to_end(key, last=False)
        if self._starter is None:
            self._starter = gevent.spawn(self._start)

    def _start(self) -> None:
        running = gevent.pool.Pool(self.size)
        try:
            while self.due:
                wait = self.quiet_from - time.monotonic()
                if wait > 0:
                    gevent.sleep(wait)  # until the fan-out is over
                    continue
                running.wait_available()
                if self.due:
                    key, (compute, args) = self.due.popitem(last=False)
                    running.spawn(self.run, key, compute, *args)
        finally:
            self._starter = None

    def close(self) -> None:
        if self._starter is not None:
            self._starter.kill(block=False)
