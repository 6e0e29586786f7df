"""The heartbeat round under a busy loop: nobody is closed before they could answer.

The pings of a round go out in slices over a quarter of the pong wait; a loop
busy with a connect storm stretches the slices (bench/results/SCALE.md measured 2.5 s
becoming 18 to 22 s). These drive ``Heartbeat.run`` on stand-in clients, with
a ping spread that takes longer than the whole wait.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import gevent
import pytest

from pushy.gateway.heartbeat import HEARTBEAT_SPREAD, Heartbeat, pong_deadline

pytestmark = pytest.mark.timeout(10)

WAIT = 0.4  # PING_INTERVAL and pong wait of the stand-in
ANSWER_AFTER = 0.05  # how soon each client answers its ping


class Client:
    """Answers every ping ANSWER_AFTER s after it was sent."""

    def __init__(self) -> None:
        self.last_seen = time.monotonic()
        self.closing = False
        self.paused = None  # its reading is not paused (Connection.paused)
        self.closed_with: tuple[int, str] | None = None

    def ping(self) -> None:
        gevent.spawn_later(ANSWER_AFTER, self._answer)

    def _answer(self) -> None:
        self.last_seen = time.monotonic()

    def close(self, code: int, reason: str) -> None:
        self.closing = True
        self.closed_with = (code, reason)


def slow_spread(clients: list[Client], spread: float) -> None:
    """Pings everyone, the last one after 2x the whole wait (a busy loop)."""
    for client in clients[:-1]:
        client.ping()
    gevent.sleep(2 * WAIT)
    clients[-1].ping()


def stand_in(clients: list[Client]) -> Heartbeat:
    heartbeat = Heartbeat(clients, SimpleNamespace(ping_timeouts=0), WAIT)
    heartbeat._ping_spread = slow_spread
    return heartbeat


def run_first_round(gateway) -> None:
    """Run the heartbeat past its first round's check (2 x WAIT of stretched
    spread, then 3/4 WAIT) and a little more."""
    heartbeat = gevent.spawn(gateway.run)
    try:
        gevent.sleep(2 * WAIT + WAIT * (1 - HEARTBEAT_SPREAD) + 0.2)
    finally:
        heartbeat.kill()


def test_clients_pinged_late_in_a_stretched_round_are_not_closed():
    clients = [Client() for _ in range(3)]
    gateway = stand_in(clients)
    run_first_round(gateway)
    assert [c.closed_with for c in clients] == [None, None, None]
    assert gateway.stats.ping_timeouts == 0


def test_a_silent_client_is_still_closed_after_a_stretched_round():
    silent = Client()
    silent.ping = lambda: None  # never answers
    clients = [Client(), silent, Client()]
    gateway = stand_in(clients)
    run_first_round(gateway)
    assert silent.closed_with == (1008, "ping timeout")
    assert [clients[0].closed_with, clients[2].closed_with] == [None, None]


def test_the_deadline():
    # An on-time spread: the wait from the round's start decides.
    assert pong_deadline(100.0, 102.5, 10.0) == 110.0
    # A stretched one: three quarters of the wait after the last ping.
    assert pong_deadline(100.0, 120.0, 10.0) == 127.5
