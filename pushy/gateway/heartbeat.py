"""Pings: every client each PING_INTERVAL, closing those that stay silent."""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

import gevent

from pushy.gateway import frames
from pushy.gateway.stats import Stats

PING_FRAME = frames.build_frame(frames.OP_PING, b"")
# A client must answer a ping within this, or by the next ping if that is sooner.
MAX_PONG_WAIT = 10.0
# The pings of one round go out over this share of the wait for answers, a
# slice every HEARTBEAT_STEP seconds, never all at once (see Heartbeat.run).
HEARTBEAT_SPREAD = 0.25
HEARTBEAT_STEP = 0.01


def pong_deadline(pinged_at: float, pings_done: float, wait: float) -> float:
    """When a heartbeat round may close the clients still silent.

    ``wait`` after the round began, and never sooner than three quarters of it
    after its last ping went out. The pings go out in HEARTBEAT_STEP sleeps, and
    a loop busy with a connect storm stretches each: bench.scale measured a
    2.5 s spread taking 18 to 22 s at 17,000 connections per process, and the
    clients pinged last were closed (1008) before they could answer.
    """
    return max(pinged_at + wait, pings_done + wait * (1 - HEARTBEAT_SPREAD))


class Heartbeat:
    """Pings the open ``connections`` (the hub's set) and closes the silent."""

    def __init__(
        self, connections: Collection[Any], stats: Stats, ping_interval: float
    ) -> None:
        self.connections = connections
        self.stats = stats
        self.interval = ping_interval

    def run(self) -> None:
        """Ping everyone each PING_INTERVAL; close who stayed silent after a ping.

        A ping to every client at once put thousands of writes (and then as
        many pongs to read) in front of any update that arrived meanwhile: a
        latency tail every PING_INTERVAL (bench/results/PROFILE.md, section 5).
        So the pings go out in slices over a quarter of the wait; every client
        still has at least three quarters of it to answer, however long a busy
        loop made the slices take (``pong_deadline``).
        """
        interval = self.interval
        wait = min(interval, MAX_PONG_WAIT)
        while True:
            pinged_at = time.monotonic()
            self._ping_spread(list(self.connections), wait * HEARTBEAT_SPREAD)
            deadline = pong_deadline(pinged_at, time.monotonic(), wait)
            gevent.sleep(max(0.0, deadline - time.monotonic()))
            for client in list(self.connections):
                # A client whose reading we paused (its message waits on an
                # authorization, or the rate limit) may have answered unread.
                if (
                    client.last_seen < pinged_at
                    and not client.closing
                    and client.paused is None
                ):
                    self.stats.ping_timeouts += 1
                    client.close(frames.CLOSE_POLICY, "ping timeout")
            gevent.sleep(interval - wait)

    def _ping_spread(self, clients: list[Any], spread: float) -> None:
        if not clients:
            return
        steps = max(1, int(spread / HEARTBEAT_STEP))
        size = -(-len(clients) // steps)  # ceiling: every client within the spread
        for start in range(0, len(clients), size):
            for client in clients[start : start + size]:
                if not client.finished:
                    client.send(PING_FRAME)
            gevent.sleep(HEARTBEAT_STEP)
