"""Authorization questions, scheduled fairly onto the gateway's thread pool.

A question (a session read, a view run) waits in the lane of whoever asked it:
one lane per client address, one for connections without an address (Unix
peers), one for the background refreshes. A pool thread that comes free takes
the oldest question of the next lane in turn, so a flood from one address
waits behind itself only, and a fresh subscribe from another address is asked
within about one view time.

What waits is bounded: ``per_connection`` questions per connection,
``per_client`` per address (None: no bound, like a Unix peer's lane); past
a bound the question is refused at once (``Busy``). A question not started
within ``timeout`` seconds is refused too. A question whose askers all left
(their connections closed) before it started is dropped, never run. One that
runs past ``timeout`` is answered ``TimedOut``; its thread cannot be stopped,
so it stays busy until the view returns (an *overrun*), and the same question
asked meanwhile is refused at once rather than given a second thread.

Nothing here knows Django: a question is a callable and its arguments, and
what a pool thread does around each (its database connections: db_threads.py)
is handed in as ``before_job`` and ``after_job``.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import gevent
from gevent.event import AsyncResult
from gevent.threadpool import ThreadPool

from pushy.gateway.locks import native_lock
from pushy.logs import Throttled

logger = logging.getLogger(__name__)

# The lane of the background refreshes, and of askers without an address.
REFRESH = "refresh"
UNKNOWN = "unknown"
# Refreshes waiting at most; past it one is skipped (its entry is asked again
# when it expires, by whoever needs it then).
MAX_REFRESHES_WAITING = 1000
# Seconds between log lines about views that overran AUTHORIZATION_TIMEOUT.
OVERRUN_LOG_INTERVAL = 10.0
# A question still running after this many AUTHORIZATION_TIMEOUTs (a minute at
# the default 5 s) is taken for stuck: a view waiting on something that will not
# come. With every thread so, /health says so (endpoints.py): nothing new can be
# authorized here until a restart or the views return.
STUCK_TIMEOUTS = 12


class Refused(Exception):
    """Raised to the askers of a question that was not answered; ``code`` and
    ``message`` are what their client is told (docs/protocol.md)."""

    code = "busy"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Busy(Refused):
    """Raised when too many questions wait for a connection or an address, or
    a question was not started within the timeout."""

    code = "busy"


class TimedOut(Refused):
    """Raised when a question ran (a view, a session read) past the timeout."""

    code = "timeout"


class Dropped(Exception):
    """Raised to the greenlets waiting on a question that was dropped unasked:
    every connection that asked it closed before it started."""


class Question:
    """One question: what to run, who waits for it, where it waits."""

    __slots__ = (
        "key", "func", "args", "label", "askers", "lanes", "result",
        "queued_at", "started_at", "timer", "overran",
    )  # fmt: skip

    def __init__(self, key: Any, func: Callable, args: tuple, label: str) -> None:
        self.key = key
        self.func = func
        self.args = args
        self.label = label
        self.askers: dict[Any, Any] = {}  # asker -> its lane
        self.lanes: dict[Any, int] = {}  # lane -> askers of it (while queued)
        self.result = AsyncResult()
        self.queued_at = time.monotonic()
        self.started_at = 0.0  # 0: still waiting
        self.timer: Any = None
        self.overran = False


class Questions:
    """Runs questions in a ``ThreadPool(size)``, fairly across client addresses."""

    def __init__(
        self,
        size: int,
        timeout: float,
        per_connection: int,
        per_client: int | None,
        stats: Any = None,
        before_job: Callable[[int], None] | None = None,
        after_job: Callable[[int, int], None] | None = None,
    ) -> None:
        self.pool = ThreadPool(size)
        self.size = size
        self.timeout = timeout
        self.per_connection = per_connection
        self.per_client = per_client
        self.stats = stats
        self.loop = gevent.get_hub().loop
        self.questions: dict[Any, Question] = {}  # waiting or running
        self.overrunning: dict[Any, Question] = {}
        # lane -> its waiting questions, oldest first; lanes in turn order.
        self.lanes: OrderedDict[Any, OrderedDict[Question, None]] = OrderedDict()
        self.asked_by: dict[Any, set[Question]] = {}  # connection -> its questions
        self.running = 0  # pool threads busy, overruns included
        # Questions not finished: waiting, or running (overruns too). A pool
        # thread takes its own off as its function returns, under a native lock,
        # so of jobs that finish together exactly one sees none left.
        self._unfinished = 0
        self._unfinished_lock = native_lock()
        # Times the unfinished rose from none (read by pool threads).
        self.bursts = 0
        # In the pool thread, before a job: before_job(burst); after it:
        # after_job(questions left unfinished, burst).
        self.before_job = before_job
        self.after_job = after_job
        self._overrun_log = Throttled(logger, interval=OVERRUN_LOG_INTERVAL)

    @property
    def jobs(self) -> int:
        """Questions waiting or running, overruns included."""
        return self._unfinished

    def _add_unfinished(self, change: int) -> int:
        """Count questions in (+1) or out (-1); how many are left.

        Called by the loop (a question asked, or dropped unstarted) and by pool
        threads (a function returned): a native lock, held for an addition only.
        """
        with self._unfinished_lock:
            self._unfinished += change
            return self._unfinished

    @property
    def waiting(self) -> int:
        return sum(map(len, self.lanes.values()))

    def stuck(self) -> list[Question]:
        """The questions running past ``STUCK_TIMEOUTS`` timeouts, oldest first."""
        since = time.monotonic() - STUCK_TIMEOUTS * self.timeout
        late = [q for q in self.overrunning.values() if q.started_at <= since]
        return sorted(late, key=lambda question: question.started_at)

    def all_stuck(self) -> str | None:
        """What to tell an operator when every pool thread is stuck, else None."""
        stuck = self.stuck()
        if len(stuck) < self.size:
            return None
        seconds = time.monotonic() - stuck[-1].started_at
        what = stuck[0].label or "an authorization question"
        return (
            f"all {self.size} pool threads have run one question each for "
            f"{seconds:.0f} s or more ({what}, ...): nothing new can be authorized"
        )

    # Asking --------------------------------------------------------------

    def ask(
        self, key: Any, func: Callable, *args: Any, asker: Any = None, label: str = ""
    ) -> Any:
        """``func(*args)`` in a pool thread, for ``asker``; blocks this greenlet.

        ``asker``: the connection that waits (``.client`` is its lane, and its
        closing may drop the question), ``REFRESH``, or None (no address, never
        leaves). Raises ``Busy``, ``TimedOut`` or ``Dropped``.
        """
        question = self.questions.get(key)
        if question is None:
            if key in self.overrunning:
                raise TimedOut(self._too_slow(self.overrunning[key]))
            if _gone(asker):
                raise Dropped(key)
            question = self._new(key, func, args, asker, label)
        else:
            self.join(key, asker)
        return question.result.get()

    def join(self, key: Any, asker: Any) -> None:
        """``asker`` waits for ``key``'s question too (never refused: it adds
        no work); while it waits, its lane may start it."""
        question = self.questions.get(key)
        if question is None or asker in question.askers or _gone(asker):
            return
        lane = _lane(asker)
        if not question.started_at and self._room(lane, question):
            self._enqueue(question, lane)
        self._add_asker(question, asker, lane)

    def _new(
        self, key: Any, func: Callable, args: tuple, asker: Any, label: str
    ) -> Question:
        lane = _lane(asker)
        if _connection(asker):
            held = len(self.asked_by.get(asker, ()))
            if held >= self.per_connection:
                self._refuse(
                    f"too many authorization questions waiting for this connection "
                    f"({held}, MAX_QUESTIONS_PER_CONNECTION); try again later"
                )
        question = Question(key, func, args, label)
        if not self._room(lane, question):
            what = "refreshes" if lane == REFRESH else "this client address"
            self._refuse(
                f"too many authorization questions waiting for {what} "
                f"({len(self.lanes[lane])}, MAX_QUESTIONS_PER_CLIENT); try again later"
            )
        if self._add_unfinished(1) == 1:
            self.bursts += 1
        self.questions[key] = question
        self._enqueue(question, lane)
        self._add_asker(question, asker, lane)
        question.timer = self.loop.timer(self.timeout)
        question.timer.start(self._waited_too_long, question)
        self._pump()
        return question

    def _room(self, lane: Any, question: Question) -> bool:
        waiting = self.lanes.get(lane)
        if waiting is None or question in waiting:
            return True
        if lane == REFRESH:
            return len(waiting) < MAX_REFRESHES_WAITING
        return (
            lane == UNKNOWN
            or self.per_client is None
            or (len(waiting) < self.per_client)
        )

    def _refuse(self, message: str) -> None:
        self._count("questions_refused")
        raise Busy(message)

    def _enqueue(self, question: Question, lane: Any) -> None:
        waiting = self.lanes.get(lane)
        if waiting is None:
            waiting = self.lanes[lane] = OrderedDict()
        waiting[question] = None

    def _add_asker(self, question: Question, asker: Any, lane: Any) -> None:
        question.askers[asker] = lane
        if not question.started_at:
            question.lanes[lane] = question.lanes.get(lane, 0) + 1
        if _connection(asker):
            self.asked_by.setdefault(asker, set()).add(question)

    # Leaving -------------------------------------------------------------

    def forget(self, asker: Any) -> None:
        """``asker`` (a connection) closed: it waits for nothing any more.

        A waiting question nobody else waits for is dropped, never run.
        """
        for question in self.asked_by.pop(asker, ()):
            lane = question.askers.pop(asker, None)
            if lane is None or question.started_at:
                continue  # a running question runs on: its answer is cached
            left = question.lanes.pop(lane, 0) - 1
            if left > 0:
                question.lanes[lane] = left
            else:
                self._unqueue(question, lane)
            if not question.askers:
                self._drop(question)

    def _drop(self, question: Question) -> None:
        self._count("questions_dropped")
        self._add_unfinished(-1)  # never started: no thread will
        self._end(question)
        question.result.set_exception(Dropped(question.key))

    def _unqueue(self, question: Question, lane: Any) -> None:
        waiting = self.lanes.get(lane)
        if waiting is not None:
            waiting.pop(question, None)
            if not waiting:
                del self.lanes[lane]

    def _end(self, question: Question) -> None:
        """``question`` waits and runs no more: out of every lane and index."""
        if self.questions.get(question.key) is question:
            del self.questions[question.key]
        for lane in question.lanes:
            self._unqueue(question, lane)
        if question.timer is not None:
            question.timer.close()
            question.timer = None
        for asker in question.askers:
            asked = self.asked_by.get(asker)
            if asked is not None:
                asked.discard(question)
                if not asked:
                    del self.asked_by[asker]

    def _waited_too_long(self, question: Question) -> None:
        """Not started within the timeout: refused (an event-loop callback)."""
        self._count("questions_refused")
        self._add_unfinished(-1)  # never started: no thread will
        self._end(question)
        question.result.set_exception(
            Busy(
                f"the gateway could not ask within AUTHORIZATION_TIMEOUT "
                f"({self.timeout:g} s): too many questions waiting; try again later"
            )
        )

    # Running -------------------------------------------------------------

    def _pump(self) -> None:
        """Start waiting questions on free threads, one lane after the other."""
        while self.running < self.size and self.lanes:
            lane, waiting = self.lanes.popitem(last=False)
            question, _ = waiting.popitem(last=False)
            if waiting:
                self.lanes[lane] = waiting  # to the back of the turn
            if question.askers and all(map(_gone, question.askers)):
                self._drop(question)  # closing connections, not forgotten yet
                continue
            self._start(question)

    def _start(self, question: Question) -> None:
        for lane in question.lanes:
            self._unqueue(question, lane)
        question.lanes.clear()
        question.timer.close()
        question.started_at = time.monotonic()
        self._observe("question_wait_seconds", question.started_at - question.queued_at)
        question.timer = self.loop.timer(self.timeout)
        question.timer.start(self._overran, question)
        self.running += 1
        gevent.spawn(self._execute, question)

    def _execute(self, question: Question) -> None:
        try:
            value = self.pool.spawn(self._in_thread, question).get()
        except BaseException as e:  # noqa: BLE001 -- handed to the askers
            outcome: tuple[bool, Any] = (False, e)
        else:
            outcome = (True, value)
        finally:
            self.running -= 1
            self._observe(
                "question_run_seconds", time.monotonic() - question.started_at
            )
        if question.overran:
            self.overrunning.pop(question.key, None)
        else:
            self._end(question)
            ok, value = outcome
            if ok:
                question.result.set(value)
            else:
                question.result.set_exception(value)
        self._pump()

    def _in_thread(self, question: Question) -> Any:
        """In a pool thread: the question's function, with the housekeeping
        handed in around it (a burst's last job is told it is the last)."""
        burst = self.bursts
        try:
            if self.before_job is not None:
                self.before_job(burst)
            return question.func(*question.args)
        finally:
            left = self._add_unfinished(-1)
            if self.after_job is not None:
                self.after_job(left, burst)

    def _overran(self, question: Question) -> None:
        """Still running at the timeout: its askers are refused; its thread
        stays busy until it returns (an event-loop callback)."""
        self._count("questions_timed_out")
        question.overran = True
        self._end(question)
        self.overrunning[question.key] = question
        message = self._too_slow(question)
        self._overrun_log.log(
            logging.WARNING,
            "%s; its thread stays busy until it returns (%d of %d threads so)",
            message,
            len(self.overrunning),
            self.size,
        )
        question.result.set_exception(TimedOut(message))

    def _too_slow(self, question: Question) -> str:
        what = question.label or "an authorization question"
        return f"{what} took longer than AUTHORIZATION_TIMEOUT ({self.timeout:g} s)"

    # Numbers -------------------------------------------------------------

    def _count(self, name: str) -> None:
        if self.stats is not None:
            setattr(self.stats, name, getattr(self.stats, name) + 1)

    def _observe(self, name: str, seconds: float) -> None:
        if self.stats is not None:
            getattr(self.stats, name).observe(seconds)

    def close(self) -> None:
        self.pool.kill()


def _lane(asker: Any) -> Any:
    if asker == REFRESH:
        return REFRESH
    client = getattr(asker, "client", None)
    return UNKNOWN if client is None else client


def _connection(asker: Any) -> bool:
    """Whether ``asker`` is a connection (it can close), not None or REFRESH."""
    return asker is not None and asker != REFRESH


def _gone(asker: Any) -> bool:
    return _connection(asker) and bool(getattr(asker, "closing", False))
