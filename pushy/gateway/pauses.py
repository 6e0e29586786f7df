"""How long the event loop could not run: its lag, and the collector's pauses.

Every update waits while something holds the loop (a long dispatch, a full
garbage collection, a pool thread holding the GIL), so these are where latency
tails show first. A greenlet asks to wake every ``TICK`` and records how late it
woke; ``gc.callbacks`` time every collection. /stats and /metrics report the
worst of each over the last minute or so, and count the stalls.
"""

from __future__ import annotations

import gc
import time
from typing import Any

import gevent

# How often the loop's lag is sampled, and what counts as a stall.
TICK = 0.1
STALL = 0.05
# The maxima cover at least this many seconds, and at most twice as many.
WINDOW = 60.0


class WindowMax:
    """The largest value added over the last ``WINDOW`` to ``2 * WINDOW`` seconds."""

    __slots__ = ("window", "current", "previous", "since")

    def __init__(self, window: float = WINDOW) -> None:
        self.window = window
        self.current = self.previous = 0.0
        self.since = time.monotonic()

    def add(self, value: float) -> None:
        self._roll()
        self.current = max(self.current, value)

    def max(self) -> float:
        self._roll()
        return max(self.current, self.previous)

    def _roll(self) -> None:
        now = time.monotonic()
        if now - self.since >= self.window:
            # A window with nothing added hands on nothing.
            gone = now - self.since >= 2 * self.window
            self.previous = 0.0 if gone else self.current
            self.current = 0.0
            self.since = now


class PauseMonitor:
    """The loop's lag and the collector's pauses, counted in ``stats``."""

    def __init__(self, stats: Any) -> None:
        self.stats = stats
        self.lag = WindowMax()
        self.gc_pause = WindowMax()
        self._gc_started = 0.0

    def start(self) -> gevent.Greenlet:
        gc.callbacks.append(self._on_gc)
        return gevent.spawn(self._watch)

    def stop(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def snapshot(self) -> dict[str, float]:
        return {
            "loop_lag_max_seconds": round(self.lag.max(), 4),
            "gc_pause_max_seconds": round(self.gc_pause.max(), 4),
        }

    def _watch(self) -> None:
        while True:
            due = time.monotonic() + TICK
            gevent.sleep(TICK)
            late = time.monotonic() - due
            self.lag.add(late)
            if late >= STALL:
                self.stats.loop_stalls += 1

    def _on_gc(self, phase: str, info: dict) -> None:
        # Collections run in whichever thread allocated; the pool's threads too.
        if phase == "start":
            self._gc_started = time.perf_counter()
            return
        self.gc_pause.add(time.perf_counter() - self._gc_started)
        if info.get("generation") == 2:
            self.stats.gc_full_collections += 1
