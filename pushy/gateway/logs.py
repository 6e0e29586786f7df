"""Log lines that may repeat for every message, written at most once a minute.

A poison stream (thousands of invalid messages a second) must neither fill the
disk nor hide everything else in the log, yet the first occurrence and the
volume must be visible. ``Throttled`` logs the first call, then at most one per
``interval``, and says how many it left out in between.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

INTERVAL = 60.0


class Throttled:
    """One kind of log line, written at most once per ``interval`` seconds."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self.next_at: float | None = None
        self.suppressed = 0

    def log(self, level: int, msg: str, *args: Any, exc_info: bool = False) -> bool:
        """Log now unless one was logged within ``interval``; whether it was."""
        now = self.clock()
        if self.next_at is not None and now < self.next_at:
            self.suppressed += 1
            return False
        if self.suppressed:
            msg += " (and %d more like it not logged since the last one)"
            args = (*args, self.suppressed)
        self.logger.log(level, msg, *args, exc_info=exc_info)
        self.next_at = now + self.interval
        self.suppressed = 0
        return True
