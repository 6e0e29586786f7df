"""The question scheduler with plain callables in a real thread pool: turns
across client addresses, bounds, dropped questions, timeouts, the histograms.

tests/gateway/test_authorization_fairness.py runs it in a real runpushy with
real views and sockets; these pin the order and the counts exactly.
"""

import threading
import time

import gevent
import pytest

from pushy.gateway.questions import REFRESH, Busy, Dropped, Questions, TimedOut
from pushy.gateway.stats import Stats

pytestmark = pytest.mark.timeout(20)


class Asker:
    """What the scheduler reads of a connection: its client address and state."""

    def __init__(self, client):
        self.client = client
        self.closing = False


@pytest.fixture
def make():
    made = []

    def make(size=1, timeout=5.0, per_connection=2, per_client=100, **hooks):
        stats = Stats()
        questions = Questions(size, timeout, per_connection, per_client, stats, **hooks)
        made.append(questions)
        return questions, stats

    yield make
    for questions in made:
        questions.close()


class Gate:
    """A thread-safe gate the first question waits at, holding the pool's thread."""

    def __init__(self):
        self.event = threading.Event()

    def hold(self):
        self.event.wait(10)
        return "held"


def ask_later(questions, key, func, *args, asker=None):
    greenlet = gevent.spawn(questions.ask, key, func, *args, asker=asker)
    gevent.sleep(0)  # let it queue its question
    return greenlet


def test_a_flood_from_one_address_waits_behind_itself(make):
    questions, stats = make(size=1)
    ran = []
    gate = Gate()
    first = ask_later(questions, "first", gate.hold, asker=Asker("A"))
    flood = [
        ask_later(questions, ("a", n), ran.append, ("a", n), asker=Asker("A"))
        for n in range(20)
    ]
    other = ask_later(questions, "b", ran.append, "b", asker=Asker("B"))
    refresh = ask_later(questions, "r", ran.append, "r", asker=REFRESH)
    gate.event.set()
    gevent.joinall([first, *flood, other, refresh], raise_error=True)
    # One thread: A's next, then B's, then the refresh lane, then A's others.
    assert ran[:3] == [("a", 0), "b", "r"]
    assert ran[3:] == [("a", n) for n in range(1, 20)]
    assert stats.question_run_seconds.count == 23
    assert stats.question_wait_seconds.count == 23


def test_past_the_bounds_a_question_is_refused_at_once(make):
    questions, stats = make(size=1, per_connection=1, per_client=2)
    gate = Gate()
    held = ask_later(questions, "running", gate.hold, asker=Asker("A"))
    connection = Asker("A")
    waiting = [ask_later(questions, "w1", str, asker=connection)]
    with pytest.raises(Busy, match="this connection"):
        questions.ask("w2", str, asker=connection)  # its second: refused
    waiting.append(ask_later(questions, "w3", str, asker=Asker("A")))
    with pytest.raises(Busy, match="this client address"):
        questions.ask("w4", str, asker=Asker("A"))  # A's third waiting
    # Another address, and joining a question already asked, are not refused.
    waiting.append(ask_later(questions, "w5", str, asker=Asker("B")))
    waiting.append(ask_later(questions, "w1", str, asker=Asker("A")))
    assert stats.questions_refused == 2
    gate.event.set()
    gevent.joinall([held, *waiting], raise_error=True)
    assert [g.value for g in waiting] == ["", "", "", ""]


def test_questions_of_closed_connections_are_dropped_unasked(make):
    questions, stats = make(size=1)
    gate = Gate()
    held = ask_later(questions, "running", gate.hold, asker=Asker("A"))
    ran = []
    closed = [Asker("A") for _ in range(5)]
    dropped = [
        ask_later(questions, n, ran.append, n, asker=asker)
        for n, asker in enumerate(closed)
    ]
    # Asked by two connections: still asked while one of them waits.
    shared = ask_later(questions, "shared", ran.append, "shared", asker=closed[0])
    questions.join("shared", Asker("B"))
    for asker in closed:
        asker.closing = True
        questions.forget(asker)
    assert stats.questions_dropped == 5
    assert questions.waiting == 1
    gate.event.set()
    gevent.joinall([held, *dropped, shared])
    assert all(isinstance(g.exception, Dropped) for g in dropped)
    assert ran == ["shared"]
    # A closing connection's new question is not even queued.
    with pytest.raises(Dropped):
        questions.ask("late", ran.append, "late", asker=closed[1])
    assert ran == ["shared"] and questions.jobs == 0


def test_a_question_of_closing_connections_is_dropped_when_its_turn_comes(make):
    questions, stats = make(size=1)
    gate = Gate()
    held = ask_later(questions, "running", gate.hold)
    asker = Asker("A")
    waiting = ask_later(questions, "q", str, asker=asker)
    asker.closing = True  # closing, its end not seen yet
    gate.event.set()
    gevent.joinall([held, waiting])
    assert isinstance(waiting.exception, Dropped)
    assert stats.questions_dropped == 1


def test_a_view_past_the_timeout_is_refused_and_keeps_its_thread(make):
    questions, stats = make(size=2, timeout=0.2)
    started = time.monotonic()
    with pytest.raises(TimedOut, match="slow view took longer than"):
        questions.ask("slow", time.sleep, 0.6, label="the slow view")
    assert 0.15 < time.monotonic() - started < 0.5
    assert stats.questions_timed_out == 1
    assert len(questions.overrunning) == 1 and questions.running == 1
    # Asked again meanwhile: refused at once, no second thread.
    with pytest.raises(TimedOut):
        questions.ask("slow", time.sleep, 0.6)
    assert questions.ask("quick", str) == ""  # the other thread serves
    while questions.overrunning:  # a poll, bounded by the test's timeout
        gevent.sleep(0.02)
    assert questions.running == 0
    run = stats.question_run_seconds.snapshot()
    assert run["count"] == 2 and run["sum"] >= 0.6
    assert run["buckets"]["1"] == 2 and run["buckets"]["0.5"] == 1


def test_a_question_that_waits_past_the_timeout_is_refused_busy(make):
    questions, stats = make(size=1, timeout=0.2)
    gate = Gate()
    held = gevent.spawn(questions.ask, "stuck", gate.hold)
    gevent.sleep(0)
    with pytest.raises(Busy, match="could not ask within"):
        questions.ask("waits", str, asker=Asker("A"))
    assert stats.questions_refused == 1
    gate.event.set()
    gevent.joinall([held])
    assert isinstance(held.exception, TimedOut)
    while questions.overrunning:
        gevent.sleep(0.02)
    assert questions.jobs == 0 and questions.waiting == 0


def test_of_jobs_ending_together_exactly_one_is_told_it_is_the_last(make):
    # db_threads closes a pool thread's DB connection only after a burst's last
    # job: were two told "others are left", an idle gateway would hold them all.
    before, after = [], []
    questions, _ = make(
        size=3, before_job=before.append, after_job=lambda *a: after.append(a)
    )
    for burst in (1, 2):
        together = threading.Barrier(3, timeout=10)  # all three return at once
        asks = [
            gevent.spawn(questions.ask, (burst, n), together.wait) for n in range(3)
        ]
        gevent.joinall(asks, raise_error=True)
        assert before[-3:] == [burst] * 3
        assert sorted(after[-3:]) == [(0, burst), (1, burst), (2, burst)]
        assert questions.jobs == 0


def test_a_job_whose_housekeeping_fails_is_counted_out_all_the_same(make):
    def broken(burst):
        raise ConnectionError("the database went away")

    after = []
    questions, _ = make(before_job=broken, after_job=lambda *a: after.append(a))
    with pytest.raises(ConnectionError):
        questions.ask("q", str)
    # Counted in forever, it would keep every later job's connections open.
    assert questions.jobs == 0 and after == [(0, 1)]
