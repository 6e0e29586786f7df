"""Log lines that may repeat for every message, written at most once per interval.

A poison stream (thousands of invalid messages a second), a model that fails on
every save, a Redis that keeps refusing: none may fill the disk or hide
everything else in the log, yet the first occurrence and the volume must be
visible. ``Throttled`` is the one way pushy does it, in the gateway and in the
publishing processes (thread-safe): the first line at once, then at most one
per ``interval``, saying how many were left out in between.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

INTERVAL = 60.0


class Throttled:
    """One kind of log line, written at most once per ``interval`` seconds.

    ``log()`` writes the line itself; callers that word their own lines (the
    refusals) use ``due()``, ``suppressed`` and ``take_suppressed()``.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        # When a line was last written (None: never).
        self.logged_at: float | None = None
        # Lines left out since then.
        self.suppressed = 0
        self._lock = threading.Lock()

    def due(self, now: float | None = None) -> bool:
        """Whether a line may be written now: if so it counts as written, if not
        as left out."""
        now = self.clock() if now is None else now
        with self._lock:
            if self.logged_at is not None and now < self.logged_at + self.interval:
                self.suppressed += 1
                return False
            self.logged_at = now
            return True

    def take_suppressed(self) -> int:
        """The lines left out since the last one written; the count restarts."""
        with self._lock:
            suppressed, self.suppressed = self.suppressed, 0
            return suppressed

    def log(self, level: int, msg: str, *args: Any, exc_info: bool = False) -> bool:
        """Log now unless one was logged within ``interval``; whether it was."""
        if not self.due():
            return False
        suppressed = self.take_suppressed()
        if suppressed:
            msg += " (and %d more like it not logged since the last one)"
            args = (*args, suppressed)
        self.logger.log(level, msg, *args, exc_info=exc_info)
        return True
