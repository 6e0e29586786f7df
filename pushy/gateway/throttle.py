"""Logging a condition that may repeat thousands of times a second, once a minute."""

from __future__ import annotations

import logging
import time
from typing import Any

# A repeating condition (refused handshakes, accept errors) is logged once per this.
LOG_INTERVAL = 60.0


class ThrottledLog:
    """Logs a repeating condition at most once per ``interval`` seconds.

    The first occurrence is logged at once; the next message after a quiet
    interval says how many were held back, so nothing is hidden but a flood
    of identical lines (an attack, a full process) never fills the logs.
    """

    def __init__(
        self, log: logging.Logger, level: int, interval: float = LOG_INTERVAL
    ) -> None:
        self.log = log
        self.level = level
        self.interval = interval
        self.next_at = 0.0
        self.held = 0

    def __call__(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now < self.next_at:
            self.held += 1
            return
        if self.held:
            message += " (and %d more like this since the last such message)"
            args = (*args, self.held)
        self.log.log(self.level, message, *args)
        self.next_at = now + self.interval
        self.held = 0
