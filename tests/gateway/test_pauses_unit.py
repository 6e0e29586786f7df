"""pushy.gateway.pauses in this process: a stalled loop and a collection are seen."""

from __future__ import annotations

import gc
import time

import gevent
import pytest

from pushy.gateway import pauses
from pushy.gateway.stats import Stats

pytestmark = pytest.mark.timeout(30)


def test_a_blocked_loop_counts_as_a_stall_and_sets_the_lag():
    stats = Stats()
    monitor = pauses.PauseMonitor(stats)
    watcher = monitor.start()
    try:
        gevent.sleep(pauses.TICK / 2)  # the watcher is asleep, due in TICK
        time.sleep(pauses.TICK + 0.15)  # blocks the loop past its wake-up
        gevent.sleep(pauses.TICK * 1.5)
        assert stats.loop_stalls >= 1
        assert monitor.snapshot()["loop_lag_max_seconds"] >= 0.1
    finally:
        watcher.kill()
        monitor.stop()


def test_collections_are_timed_and_full_ones_counted():
    stats = Stats()
    monitor = pauses.PauseMonitor(stats)
    monitor.start().kill()
    try:
        gc.collect()
        assert stats.gc_full_collections >= 1
        assert monitor.snapshot()["gc_pause_max_seconds"] > 0
    finally:
        monitor.stop()
    gc.collect()
    assert stats.gc_full_collections == 1  # stopped: no longer counted


def test_the_window_keeps_the_last_maximum_then_forgets_it(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(pauses.time, "monotonic", lambda: now[0])
    window = pauses.WindowMax(window=10)
    window.add(5)
    now[0] += 12  # the next window: the last one's maximum still counts
    window.add(1)
    assert window.max() == 5
    now[0] += 10  # two windows on: only what came since
    assert window.max() == 1
    now[0] += 25  # nothing added for two windows
    assert window.max() == 0
