"""In-process tests of a connection's writer and its life (writer.py, connection.py).

A real ``Writer`` and a real ``Connection`` on a fake socket and a fake event
loop (tests/gateway/fake_io.py): the test says how many bytes the kernel
takes, runs the loop's callbacks, fires the write watcher and the write
timer, and moves the writer's clock, so the slow-client rules are seen to
fire exactly when they should, without a process, a real socket or a wait.
tests/gateway/test_slow_clients.py checks the same rules end to end.
"""

from __future__ import annotations

import logging

import gevent
import pytest

from pushy.gateway import connection as connection_module
from pushy.gateway import frames
from pushy.gateway import writer as writer_module
from pushy.gateway.connection import CLOSE_WAIT, Connection, State
from pushy.gateway.writer import BACKLOG, BACKLOG_GRACE, STALLED, WRITE_BATCH, Writer
from tests.gateway.fake_io import (
    LIMITS,
    FakeSocket,
    client_frame,
    fake_shared,
)

pytestmark = pytest.mark.timeout(10)


def update(n: int, size: int = 20) -> bytes:
    return frames.message_frame({"type": "update", "n": n, "pad": "x" * size})


class Clock:
    """The writer's clock (the backlog rule's grace), moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(writer_module, "time", clock)
    # What the kernel still holds for the client: the fake socket says.
    monkeypatch.setattr(writer_module, "_unsent", lambda sock: sock.unsent)
    return clock


class RecordingWriter(Writer):
    """A writer alone: it records what it reports instead of acting on it."""

    __slots__ = ("reports",)

    def __init__(self, sock: FakeSocket) -> None:
        super().__init__(sock, fake_shared())
        self.reports: list[tuple] = []

    def written(self) -> None:
        self.reports.append(("written",))

    def write_failed(self) -> None:
        self.reports.append(("write_failed",))

    def too_slow(self, rule: str, detail: str) -> None:
        self.reports.append(("too_slow", rule))


def blocked_writer(*queued: bytes) -> RecordingWriter:
    """A writer whose kernel takes nothing, its writer run once: backlogged."""
    writer = RecordingWriter(FakeSocket(room=0))
    for frame in queued:
        writer.send(frame)
    writer.shared.loop.run()
    assert writer.backlogged and writer.write_wait is not None
    return writer


# The writer ----------------------------------------------------------------


def test_send_queues_and_the_loop_callback_writes_in_one_batch():
    writer = RecordingWriter(FakeSocket())
    sent = [update(n) for n in range(3)]
    for frame in sent:
        writer.send(frame)
    assert writer.sock.sent == b"" and len(writer.queue) == 3  # never inside send()
    assert writer.shared.loop.run() == 1  # one callback for the three
    assert writer.sock.sent == b"".join(sent)
    assert writer.reports == [("written",)]
    assert writer.shared.stats.frames_out == 3 and writer.writer is None


def test_a_hold_keeps_frames_aside_and_release_sends_the_replay_first_once():
    writer = RecordingWriter(FakeSocket())
    live = [update(n) for n in range(3)]
    writer.hold()
    for frame in live[1:]:  # arrive while the history is read
        writer.send(frame)
    writer.shared.loop.run()
    assert writer.sock.sent == b"" and writer.holding
    # The replay read the first two (one of them also held): each goes once,
    # in version order, then what the history lacked.
    writer.release([b"answer", live[0], live[1]])
    writer.shared.loop.run()
    assert writer.sock.sent == b"".join([b"answer", *live]) and not writer.holding


def test_a_hold_past_the_queue_bound_gives_up_and_sends_in_order():
    writer = RecordingWriter(FakeSocket())
    live = [update(n) for n in range(LIMITS.queue_size + 1)]
    writer.hold()
    for frame in live:
        writer.send(frame)
    assert not writer.holding  # the replay then resyncs instead
    writer.release([b"answer"])
    writer.shared.loop.run()
    assert writer.sock.sent == b"".join([*live, b"answer"])


def test_a_close_while_holding_sends_the_close_and_nothing_held():
    writer = RecordingWriter(FakeSocket())
    writer.hold()
    writer.send(update(1))
    writer.send_last(b"close")
    assert not writer.holding  # what was held is let go at once
    writer.release([b"answer"])  # the replay's answer: too late, sealed
    writer.send(update(2))
    writer.shared.loop.run()
    assert writer.sock.sent == b"close" and not writer.holding
    writer.hold()  # nothing to hold on a sealed writer
    assert not writer.holding


def test_big_frames_go_out_alone_as_the_shared_object():
    writer = RecordingWriter(FakeSocket())
    big = [update(n, size=WRITE_BATCH // 2 + 10) for n in range(3)]
    small = [update(n) for n in range(3, 6)]
    for frame in [*big, *small]:
        writer.send(frame)
    writer.shared.loop.run()
    writes = writer.sock.writes
    # No copy of a big frame: each goes as the object every subscriber shares;
    # the last one joins the small frames behind it (one write, under the batch).
    assert [w is f for w, f in zip(writes, big, strict=False)] == [True, True, False]
    assert len(writes) == 3 and writes[2] == b"".join([big[2], *small])
    assert writer.sock.sent == b"".join([*big, *small])


def test_what_the_kernel_refuses_waits_for_the_socket_in_order():
    writer = RecordingWriter(FakeSocket(room=10))
    sent = [update(n) for n in range(3)]
    for frame in sent:
        writer.send(frame)
    writer.shared.loop.run()
    wait = writer.write_wait
    assert wait is not None and writer.backlogged
    # The rest of the cut frame is a view of the shared frame, never a copy;
    # the frames behind it are back in the queue.
    assert wait.pending.obj is sent[0] and len(wait.pending) == len(sent[0]) - 10
    assert list(writer.queue) == sent[1:]
    writer.send(sent[0])  # one more while waiting: queued behind
    [watcher] = writer.shared.loop.active("write")
    writer.sock.room = 1 << 20
    watcher.fire()
    assert writer.sock.sent == b"".join([*sent, sent[0]])
    assert writer.reports == [("written",)]
    assert writer.write_wait is None and not writer.backlogged
    assert watcher.closed and writer.shared.loop.active("timer") == []


def test_a_socket_error_is_reported_once_and_nothing_is_written():
    writer = RecordingWriter(FakeSocket())
    writer.sock.error = ConnectionResetError(104, "reset")
    writer.send(update(1))
    writer.shared.loop.run()
    assert writer.reports == [("write_failed",)]


def test_what_one_dispatch_queues_before_the_writer_runs_is_no_backlog():
    writer = RecordingWriter(FakeSocket(room=0))
    for n in range(10 * LIMITS.queue_size):
        writer.send(update(n))
    writer.shared.loop.run()
    assert writer.backlogged and writer.reports == []


def test_a_backlog_past_the_bound_for_the_grace_is_too_slow(clock):
    writer = blocked_writer(update(0))
    for n in range(LIMITS.queue_size + 1):  # past the bound: the grace starts
        writer.send(update(n))
    clock.now += BACKLOG_GRACE / 2
    writer.send(update(99))
    assert writer.reports == []
    clock.now += BACKLOG_GRACE / 2
    writer.send(update(100))
    assert writer.reports == [("too_slow", BACKLOG)]


def test_a_backlog_back_within_the_bound_starts_its_grace_anew(clock):
    writer = blocked_writer(update(0))
    for n in range(LIMITS.queue_size + 1):
        writer.send(update(n))
    assert writer.over_since == clock.now
    # The client takes the cut frame and two more: one is being written, two
    # wait in the queue, within the bound.
    writer.sock.room = len(update(0)) * 3
    writer.shared.loop.active("write")[0].fire()
    assert len(writer.queue) == 2 and writer.over_since == 0
    clock.now += 2 * BACKLOG_GRACE
    for n in range(LIMITS.queue_size - 1):  # past the bound again: a new grace
        writer.send(update(n))
    assert writer.reports == [] and writer.over_since == clock.now


def test_a_client_that_takes_no_byte_for_write_timeout_is_stalled():
    writer = blocked_writer(update(0))
    [timer] = writer.shared.loop.active("timer")
    assert timer.params == (LIMITS.write_timeout, LIMITS.write_timeout)
    timer.fire()
    assert writer.reports == [("too_slow", STALLED), ("write_failed",)]
    assert writer.write_wait is None and timer.closed


def test_a_slow_reader_whose_kernel_buffer_drains_is_not_stalled():
    sock = FakeSocket(room=0)
    sock.unsent = 4000  # the kernel holds bytes the client has not taken
    writer = RecordingWriter(sock)
    writer.send(update(0))
    writer.shared.loop.run()
    [timer] = writer.shared.loop.active("timer")
    sock.unsent = 3000  # it took some: reading, slowly
    timer.fire()
    assert writer.reports == [] and timer.active
    timer.fire()  # nothing taken during the next whole wait
    assert writer.reports == [("too_slow", STALLED), ("write_failed",)]


# The connection: its life, and what it does about the writer's reports ------


class Events:
    """A connection's events, recorded; a message b"boom" is a bug."""

    def __init__(self) -> None:
        self.gone: list[Connection] = []
        self.messages: list[bytes] = []

    def joined(self, connection: Connection) -> None:
        pass

    def message(self, connection: Connection, payload: bytes) -> None:
        self.messages.append(payload)
        if payload == b"boom":
            raise RuntimeError("a bug in handling a message")
        if payload == b"wait then boom":
            connection.wait_for(self._fail)

    def _fail(self) -> None:
        raise RuntimeError("a bug in a step that waited")

    def leaving(self, connection: Connection) -> None:
        pass

    def unsubscribe(self, connection: Connection) -> None:
        pass

    def ended(self, connection: Connection) -> None:
        self.gone.append(connection)


@pytest.fixture
def later(monkeypatch) -> list[tuple]:
    """What connections schedule with gevent.spawn_later (the close wait)."""
    scheduled: list[tuple] = []
    monkeypatch.setattr(
        connection_module.gevent,
        "spawn_later",
        lambda seconds, function, *args: scheduled.append((seconds, function, args)),
    )
    return scheduled


def open_connection(room: int = 1 << 30, read: bool = False) -> Connection:
    connection = Connection(fake_shared(), Events(), FakeSocket(room), visitor=None)
    if read:
        connection.start()
    return connection


def test_a_close_goes_after_what_was_queued_then_the_connection_is_closed():
    connection = open_connection()
    sock, loop = connection.sock, connection.shared.loop
    assert connection.state is State.OPEN and not connection.closing
    connection.send(update(1))
    connection.close(frames.CLOSE_GOING_AWAY, "bye")
    assert connection.state is State.CLOSING and connection.closing
    connection.send(update(2))  # nothing after a close
    connection.close(frames.CLOSE_NORMAL)  # nor a second close
    loop.run()
    assert [opcode for opcode, _ in sock.frames()] == [frames.OP_TEXT, frames.OP_CLOSE]
    assert sock.close_codes() == [frames.CLOSE_GOING_AWAY]
    # Not reading: no answer to wait for, so it ends as its close goes out.
    assert connection.state is State.CLOSED and connection.finished
    assert connection.events.gone == [connection] and sock.closed


def test_the_closing_handshake_ends_with_the_clients_close_frame(later):
    connection = open_connection(read=True)
    sock, loop = connection.sock, connection.shared.loop
    connection.close(frames.CLOSE_NORMAL)
    loop.run()
    assert sock.close_codes() == [frames.CLOSE_NORMAL]
    assert connection.state is State.CLOSING and not sock.closed
    assert [(seconds, f.__name__) for seconds, f, _ in later] == [(CLOSE_WAIT, "abort")]
    sock.incoming += client_frame(frames.OP_CLOSE, (1000).to_bytes(2, "big"))
    loop.active("read")[0].fire()
    assert connection.state is State.CLOSED and sock.closed
    assert connection.events.gone == [connection]


def test_a_client_that_never_answers_the_close_is_cut_after_close_wait(later):
    connection = open_connection(read=True)
    connection.close(frames.CLOSE_NORMAL)
    connection.shared.loop.run()
    [(_, abort, args)] = later
    abort(*args)
    assert connection.state is State.CLOSED and connection.sock.closed
    assert connection.events.gone == [connection]


def test_a_backlog_closes_with_4008_after_the_frame_being_written(clock):
    connection = open_connection(room=0)
    sock, loop, stats = connection.sock, connection.shared.loop, connection.shared.stats
    first = update(0)
    connection.send(first)
    loop.run()
    for n in range(1, LIMITS.queue_size + 2):
        connection.send(update(n))
    clock.now += BACKLOG_GRACE
    connection.send(update(99))
    assert connection.state is State.CLOSING
    assert (stats.slow_closes, stats.slow_closes_backlog) == (1, 1)
    sock.room = 1 << 20
    loop.active("write")[0].fire()
    # The frame cut in the middle is finished; the backlog is dropped.
    assert [payload for _, payload in sock.frames()][0] == first[2:]
    assert sock.close_codes() == [frames.CLOSE_TOO_SLOW]
    assert len(sock.frames()) == 2
    assert connection.state is State.CLOSED and sock.closed


def test_a_stalled_client_is_dropped_without_a_close_frame():
    connection = open_connection(room=5)
    sock, loop, stats = connection.sock, connection.shared.loop, connection.shared.stats
    connection.send(update(0))
    loop.run()
    loop.active("timer")[0].fire()
    assert sock.sent == update(0)[:5]  # half a frame: no room for a close
    assert sock.closed and connection.state is State.CLOSED
    assert (stats.slow_closes, stats.slow_closes_stalled) == (1, 1)
    assert connection.events.gone == [connection]


def unexpected_errors(caplog) -> int:
    return caplog.text.count("closing a connection after an unexpected error")


def test_a_bug_in_handling_a_message_closes_with_1011_once(caplog):
    connection = open_connection(read=True)
    sock, loop = connection.sock, connection.shared.loop
    sock.incoming += client_frame(frames.OP_TEXT, b"boom")
    sock.incoming += client_frame(frames.OP_TEXT, b"boom")
    with caplog.at_level(logging.ERROR, logger="pushy.gateway.connection"):
        loop.active("read")[0].fire()
        loop.run()
    assert connection.events.messages == [b"boom"]  # reading stopped at the bug
    assert sock.close_codes() == [frames.CLOSE_INTERNAL_ERROR]
    assert unexpected_errors(caplog) == 1
    assert connection.state is State.CLOSED and sock.closed


def test_a_bug_in_a_step_that_waited_closes_with_1011_once(caplog, later):
    connection = open_connection(read=True)
    sock, loop = connection.sock, connection.shared.loop
    sock.incoming += client_frame(frames.OP_TEXT, b"wait then boom")
    with caplog.at_level(logging.ERROR, logger="pushy.gateway.connection"):
        loop.active("read")[0].fire()
        waiting = connection.paused
        assert isinstance(waiting, gevent.Greenlet)
        waiting.join(timeout=5)
        assert waiting.dead
        loop.run()
    assert sock.close_codes() == [frames.CLOSE_INTERNAL_ERROR]
    assert unexpected_errors(caplog) == 1
    assert connection.state is State.CLOSING and connection.paused is None
