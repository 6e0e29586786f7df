"""One WebSocket client, driven by the event loop: no greenlet while it is idle.

An idle connection is a socket, one read watcher and this object. Reading is
an event-loop callback: when the socket is readable, what arrived goes into the
connection's ``FrameParser`` and the complete messages are handled at once,
in the callback. A step that must wait (an authorization that is not cached,
a version lookup in Redis: see actions.py) runs in a short-lived greenlet
(``wait_for``), and reading pauses until it is done, so messages are handled
in order and a client cannot queue work by sending faster than it is
answered. The rate limit pauses reading the same way.

Writing has one writer at a time per connection: an event-loop callback,
scheduled when the queue gets a frame, that writes what the kernel takes without
waiting; only when the kernel refuses bytes does a write watcher (with a
deadline) take over until the queue is empty. An update that arrives alone
skips the queue: ``send()`` writes it at once when nothing is queued ahead of
it (``Gateway.dispatch``).

``send()`` never blocks, and a client is judged by whether it keeps up over
time, never by what one dispatch queued before its writer ran:

- "stalled": the client took no byte for ``WRITE_TIMEOUT`` (its socket accepted
  nothing and the kernel's buffer toward it did not drain); the TCP connection
  is dropped (a half-written frame leaves no room for a close frame);
- "backlog": while the kernel refuses bytes, what is queued behind stayed past
  ``SEND_QUEUE_SIZE`` / ``SEND_QUEUE_BYTES`` for ``BACKLOG_GRACE`` and kept
  growing; the client is closed with 4008.

Both count in ``slow_closes`` and in a counter of their own. Frames are shared:
the hub encodes an update once and the same bytes object sits in every queue;
a partial write keeps a view of the frame it cut, never a copy.
"""

from __future__ import annotations

import collections
import fcntl
import logging
import socket
import sys
import termios
import time
from typing import Any

import gevent

from pushy.gateway import frames

logger = logging.getLogger(__name__)

# Frames that queued up while a write was in progress go out in one write
# (fewer system calls under load), up to about this many bytes.
WRITE_BATCH = 64 * 1024
# How long a closing handshake we started may wait for the client's close frame.
CLOSE_WAIT = 2.0
# How long a backlog may stay past SEND_QUEUE_SIZE / SEND_QUEUE_BYTES while more
# frames keep coming, before its client counts as too slow: longer than a burst
# takes to dispatch, far shorter than WRITE_TIMEOUT (see docs/decisions.md).
BACKLOG_GRACE = 1.0
# The two rules that make a client too slow, as logged and counted.
STALLED = "stalled"
BACKLOG = "backlog"
# What one read takes from a socket. Reads happen one at a time, in the event
# loop, so every connection reads into this one buffer; the parser keeps only
# the bytes of a frame that is not complete yet.
READ_SIZE = 64 * 1024
_read_buffer = bytearray(READ_SIZE)
_read_view = memoryview(_read_buffer)

_READ = 1
_WRITE = 2


class Connection:
    """A client of ``gateway`` on the non-blocking socket ``sock``."""

    __slots__ = (
        "gateway", "sock", "visitor", "client", "urls", "url_bytes",
        "parser", "reader", "paused", "queue", "queued_bytes", "writer",
        "write_wait", "backlogged", "over_since", "closing", "finished",
        "last_seen", "tokens", "tokens_at", "__weakref__",
    )  # fmt: skip

    def __init__(
        self, gateway: Any, sock: socket.socket, visitor: Any, client: Any = None
    ) -> None:
        self.gateway = gateway
        self.sock = sock
        self.visitor = visitor  # who the site would see (visitor.Visitor)
        self.client = client  # the key Admission counts this connection under
        self.urls: set[str] = set()
        self.url_bytes = 0  # UTF-8 bytes of self.urls (MAX_SUBSCRIPTION_BYTES)
        self.parser = frames.FrameParser(gateway.limits.max_message)
        self.reader: Any = None  # the read watcher, while reading
        # None, or what reading waits for: a handler greenlet or a rate timer.
        self.paused: Any = None
        self.queue: collections.deque[bytes] = collections.deque()
        self.queued_bytes = 0
        # None, a scheduled _flush callback, or a _WriteWait: never two.
        self.writer: Any = None
        self.write_wait: _WriteWait | None = None
        # While the kernel refuses bytes, what is queued is a backlog;
        # over_since: when it went past the bound (0: not).
        self.backlogged = False
        self.over_since = 0.0
        self.closing = False
        self.finished = False
        self.last_seen = time.monotonic()
        self.tokens = float(gateway.limits.burst)
        self.tokens_at = self.last_seen

    # Reading -------------------------------------------------------------

    def start(self, received: bytes = b"") -> None:
        """Register with the hub and start reading; ``received``: bytes that
        came after the handshake's head, already read."""
        self.gateway.hub.add(self)
        self.reader = self.gateway.loop.io(self.sock.fileno(), _READ)
        if received:
            self.parser.feed(received)
            self._guarded(self._handle_messages)
        # Those bytes may have paused reading, or ended it (a close, a bad frame).
        if not self.paused and not self.finished and self.reader is not None:
            self.reader.start(self._on_readable)

    def _on_readable(self) -> None:
        self._guarded(self._read)

    def _guarded(self, step: Any, *args: Any) -> None:
        """Run ``step``; the boundary of one connection: a bug must not go
        unseen, and must cost this client only (1011), never the process."""
        try:
            step(*args)
        except Exception:
            logger.exception("closing a connection after an unexpected error")
            self.close(frames.CLOSE_INTERNAL_ERROR, "internal error")
            self._stop_reading()

    def _read(self) -> None:
        try:
            received = self.sock.recv_into(_read_buffer, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._finish()
            return
        if not received:
            self._finish()  # the client went away
            return
        self.parser.feed(_read_view[:received])
        self._handle_messages()

    def _handle_messages(self) -> None:
        """Handle the complete messages received, in order, until one must wait.

        Every frame costs a token: a message that came in n fragments costs n
        (the parser counts the continuation frames), so fragmenting cannot
        make the parsing a client causes free of the rate limit.
        """
        parser = self.parser
        while not self.paused and not self.finished and not self._out_of_tokens():
            try:
                message = parser.next_message()
            except frames.ProtocolError as e:
                self.gateway.stats.errors += 1
                self.close(e.code, e.reason)
                self._stop_reading()
                return
            if message is None:
                return
            # Seen when handled, not when read: a paused client's pong counts.
            self.last_seen = time.monotonic()
            self.tokens -= 1
            if parser.extra_frames:
                self.tokens -= parser.extra_frames
                parser.extra_frames = 0
            if not self._on_message(*message):
                self._stop_reading()
                return

    def _on_message(self, opcode: int, payload: bytes) -> bool:
        """Handle one message; False ends reading."""
        if opcode == frames.OP_TEXT:
            if self.closing:
                return False
            self.gateway.stats.messages_in += 1
            self.gateway.actions.handle(self, payload)
        elif opcode == frames.OP_PING:
            self.send(frames.build_frame(frames.OP_PONG, payload))
        elif opcode == frames.OP_CLOSE:
            self._answer_close(payload)
            return False
        elif opcode == frames.OP_BINARY:
            self.gateway.stats.errors += 1
            self.close(frames.CLOSE_UNSUPPORTED, "binary messages are not accepted")
            return False
        return not self.closing

    def wait_for(self, step: Any, *args: Any) -> None:
        """Run ``step(*args)``, which may wait (an authorization, Redis), in a
        greenlet; this client's messages wait until it is done."""
        if self.paused is not None and self.paused is gevent.getcurrent():
            step(*args)  # in this client's waiting greenlet already
            return
        self._pause(gevent.spawn(self._waiting, step, args))

    def _waiting(self, step: Any, args: tuple) -> None:
        try:
            step(*args)
        except Exception:
            logger.exception("closing a connection after an unexpected error")
            self.close(frames.CLOSE_INTERNAL_ERROR, "internal error")
        self.paused = None
        if self.finished:
            # It ended meanwhile: undo what the message may have subscribed.
            self.gateway.hub.remove(self)
            return
        self._resume()

    def _out_of_tokens(self) -> bool:
        """Rate limit: with no token left, pause reading until one returns."""
        limits = self.gateway.limits
        now = time.monotonic()
        elapsed, self.tokens_at = now - self.tokens_at, now
        self.tokens = min(limits.burst, self.tokens + elapsed * limits.rate)
        if self.tokens >= 1:
            return False
        timer = self.gateway.loop.timer((1 - self.tokens) / limits.rate)
        self._pause(timer)
        timer.start(self._rate_resumed, timer)
        return True

    def _rate_resumed(self, timer: Any) -> None:
        timer.close()
        if self.paused is timer:
            self.paused = None
            self._resume()

    def _pause(self, what: Any) -> None:
        self.paused = what
        if self.reader is not None:
            self.reader.stop()
            if isinstance(what, gevent.Greenlet):
                # Waiting on a question: notice the client leaving meanwhile.
                self.reader.start(self._on_readable_while_waiting)

    def _on_readable_while_waiting(self) -> None:
        self._guarded(self._peek_while_waiting)

    def _peek_while_waiting(self) -> None:
        """Readable while a message waits: end a client that went away (its
        questions are dropped unasked), but read nothing it sent: that waits.

        Peeked, not read: a client that closed its socket (end of file, reset)
        finishes now; one whose next frame is a close frame is leaving, and
        its questions are forgotten; other bytes stay for later.
        """
        try:
            peeked = self.sock.recv(2, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            peeked = b""
        if not peeked:
            self._finish()
            return
        self.reader.stop()  # level-triggered: the bytes stay until we read
        if not self.parser.buffered and peeked[0] & 0x0F == frames.OP_CLOSE:
            self.gateway.authorizer.forget(self)

    def _resume(self) -> None:
        """Handle what is parsed already, then read again (unless paused anew)."""
        if self.finished:
            return
        self._guarded(self._handle_messages)
        if not self.paused and self.reader is not None and not self.finished:
            self.reader.start(self._on_readable)

    def _stop_reading(self) -> None:
        """Read no more: when we sent a close, the socket closes after it."""
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        if not self.closing:
            self._finish()
        # Closing: the close frame goes out, then _after_close_sent finishes.

    def _answer_close(self, payload: bytes) -> None:
        if self.closing:
            self._finish()  # the client answered our close: the handshake is complete
            return
        try:
            code, _reason = frames.parse_close(payload)
        except frames.ProtocolError as e:
            self.close(e.code, e.reason)
            return
        self.close(code)

    # Writing -------------------------------------------------------------

    def send(self, frame: bytes) -> None:
        """Queue ``frame``; never blocks. See the module docstring for when a
        client counts as too slow."""
        if self.closing:
            return
        if self.writer is None:
            if self.gateway.write_through and not self.queue:
                self._write_through(frame)  # nothing ahead of it to keep order with
                return
            self.writer = self.gateway.loop.run_callback(self._flush)
        # _enqueue's work, inline: this line runs once per delivery.
        self.queue.append(frame)
        self.queued_bytes += len(frame)
        if self.backlogged:
            self._check_backlog()

    def _write_through(self, frame: bytes) -> None:
        """Write ``frame`` now, inside the dispatch (Gateway.dispatch says when).

        Nothing here may end the connection: the dispatch is walking the hub's
        sets, which ending it would change under it.
        """
        try:
            sent = self.sock.send(frame)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            # Queued instead: the writer callback meets the error after the
            # dispatch and ends the connection then.
            self._enqueue(frame)
            return
        if sent == len(frame):
            self.gateway.stats.frames_out += 1
            return
        self.backlogged = True
        self.writer = self.write_wait = _WriteWait(self, memoryview(frame)[sent:])

    def _enqueue(self, frame: bytes) -> None:
        self.queue.append(frame)
        self.queued_bytes += len(frame)
        if self.writer is None:
            # The writer is first a loop callback: it runs after the current
            # dispatch, never inside it, and costs no greenlet and no timer.
            self.writer = self.gateway.loop.run_callback(self._flush)

    def _check_backlog(self) -> None:
        """Rule "backlog": past the bound for BACKLOG_GRACE, and still growing.

        Only called while the kernel refuses bytes, so what a dispatch queues
        before the writer had its turn never counts.
        """
        if self._within_bounds():
            return
        now = time.monotonic()
        if not self.over_since:
            self.over_since = now
        elif now - self.over_since >= BACKLOG_GRACE:
            self._too_slow(
                BACKLOG,
                f"{self.queued_bytes} bytes in {len(self.queue)} frames waiting, "
                f"past the bound for {now - self.over_since:.1f}s",
            )

    def _within_bounds(self) -> bool:
        limits = self.gateway.limits
        return (
            len(self.queue) <= limits.queue_size
            and self.queued_bytes <= limits.queue_bytes
        )

    def _flush(self) -> None:
        """Write without waiting; leave what the kernel refuses to a write wait.

        Runs as an event-loop callback, so it must never block or raise.
        """
        self.writer = None
        try:
            pending = self._write_nowait()
        except OSError:
            self.abort()
            return
        if pending is not None:
            self.backlogged = True
            self.writer = self.write_wait = _WriteWait(self, pending)
            return
        self._written()

    def _written(self) -> None:
        """The queue is empty: a closing connection's close frame is out."""
        if self.closing:
            self._after_close_sent()

    def _write_nowait(self) -> memoryview | None:
        """Write queued frames while the kernel takes them, never waiting.

        Returns None once the queue is empty, or the unsent end of the frame
        the kernel refused (the frames after it go back to the queue).
        """
        queue, stats = self.queue, self.gateway.stats
        while queue:
            if self.queued_bytes <= WRITE_BATCH:  # all of it, the common case
                batch = list(queue)
                queue.clear()
            else:
                batch = _take_batch(queue)
            data = b"".join(batch)  # one frame: the same object, no copy
            self.queued_bytes -= len(data)
            try:
                sent = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            if sent < len(data):
                return self._put_back(batch, sent)
            stats.frames_out += len(batch)
        return None

    def _put_back(self, batch: list[bytes], sent: int) -> memoryview:
        """After a partial write of ``batch``: the unsent end of the frame cut
        at ``sent``, a view of the shared frame (no copy); the frames after it
        go back to the front of the queue: a waiting writer holds no bytes of
        its own."""
        index = done = 0
        while sent >= done + len(batch[index]):  # sent < the batch: this ends
            done += len(batch[index])
            index += 1
        frame = batch[index]
        self.gateway.stats.frames_out += index
        rest = batch[index + 1 :]
        if rest:
            self.queue.extendleft(reversed(rest))
            self.queued_bytes += sum(map(len, rest))
        return memoryview(frame)[sent - done :]

    def _wait_ended(self) -> None:
        """The write wait emptied the queue."""
        if self.finished:
            self._close_socket()
        else:
            self._written()

    def _stalled(self) -> None:
        if not self.closing:
            self._too_slow(
                STALLED,
                f"the client took no byte for {self.gateway.limits.write_timeout:g}s",
            )
        self.abort()

    def _too_slow(self, rule: str, detail: str) -> None:
        """Close a client that does not keep up; ``rule`` says which rule fired."""
        logger.info("closing a slow client (%s: %s)", rule, detail)
        stats = self.gateway.stats
        stats.slow_closes += 1
        if rule == STALLED:
            stats.slow_closes_stalled += 1
            # A frame is half written: no room for a close frame. The caller
            # (the write wait) aborts the connection.
            self.closing = True
            return
        stats.slow_closes_backlog += 1
        self.queue.clear()
        self.queued_bytes = 0
        self.close(frames.CLOSE_TOO_SLOW, "too slow")

    def close(self, code: int | None, reason: str = "") -> None:
        """Start the closing handshake: queued frames go first, then the close."""
        if self.closing:
            return
        self._enqueue(frames.close_frame(code, reason))
        self.closing = True

    def _after_close_sent(self) -> None:
        if self.finished:
            self._close_socket()
            return
        # The client answers with its close frame (then _finish), or is cut
        # off after CLOSE_WAIT; reading goes on meanwhile, for that answer.
        if self.reader is None and not self.paused:
            self._finish()
            return
        gevent.spawn_later(CLOSE_WAIT, self.abort)

    def abort(self) -> None:
        """End the TCP connection now."""
        self.closing = True
        self.queue.clear()
        self.queued_bytes = 0
        if self.write_wait is not None:
            self.write_wait.cancel()
        self._finish()
        self._close_socket()

    # Ending --------------------------------------------------------------

    def _finish(self) -> None:
        """Leave the hub; the socket closes once what is queued (a close frame,
        often) is written, or at once if nothing is."""
        if self.finished:
            return
        self.finished = True
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        paused, self.paused = self.paused, None
        if paused is not None and not isinstance(paused, gevent.Greenlet):
            paused.close()  # a rate timer; a handler greenlet ends by itself
        self.gateway.connection_ended(self)
        if self.writer is not None and self.write_wait is None:
            self.writer.stop()  # a pending _flush: run it now instead
            self._flush()
        if self.write_wait is None:
            self._close_socket()
        # Else the write wait finishes within WRITE_TIMEOUT and closes it.

    def _close_socket(self) -> None:
        if self.sock.fileno() < 0:
            return
        if self.write_wait is not None:
            self.write_wait.cancel()
        try:
            self.sock.close()
        except OSError:
            pass


class _WriteWait:
    """What the kernel refused, waiting for the socket to be writable again.

    Rule "stalled": each wait for the kernel to take a byte is bounded by
    WRITE_TIMEOUT; any progress starts a new wait. The kernel calls a socket
    writable again only once a good part of its buffer (up to 4 MB) has
    drained, which takes a slow reader longer than WRITE_TIMEOUT while it is
    reading all along. So when the wait runs out, the bytes the kernel still
    holds for the client are compared with those it held when the wait began:
    fewer means the client took some, and the wait starts again.
    """

    __slots__ = ("connection", "pending", "watcher", "timer", "held")

    def __init__(self, connection: Connection, pending: memoryview) -> None:
        self.connection = connection
        self.pending: memoryview | None = pending
        loop = connection.gateway.loop
        self.watcher = loop.io(connection.sock.fileno(), _WRITE)
        self.watcher.start(self._writable)
        timeout = connection.gateway.limits.write_timeout
        # Repeating, so that again() restarts the whole wait (a stopped libev
        # timer restarts with only what was left of it).
        self.timer = loop.timer(timeout, timeout)
        self._start_deadline()

    def _start_deadline(self) -> None:
        self.held = _unsent(self.connection.sock)
        self.timer.again(self._deadline)

    def _writable(self) -> None:
        connection = self.connection
        try:
            progressed = self._write()
        except Exception as e:
            if not isinstance(e, OSError):
                logger.exception("closing a connection after an unexpected error")
            self.cancel()
            connection.abort()
            return
        if self.pending is None:
            self.cancel()
            connection._wait_ended()
        elif progressed:
            self._start_deadline()  # the client took bytes: a new wait

    def _write(self) -> bool:
        """Write the pending end, then the queue, until the kernel refuses
        bytes or all is out; whether any byte went out."""
        connection, progressed = self.connection, False
        while self.pending is not None:
            if connection.over_since and connection._within_bounds():
                connection.over_since = 0.0
            try:
                sent = connection.sock.send(self.pending)
            except (BlockingIOError, InterruptedError):
                return progressed
            progressed = True
            self.pending = self.pending[sent:]
            if not self.pending:
                connection.gateway.stats.frames_out += 1
                self.pending = connection._write_nowait()
        return progressed

    def _deadline(self) -> None:
        held = _unsent(self.connection.sock)
        if self.held is not None and held is not None and held < self.held:
            self.held = held  # the client is reading: not stalled; wait again
            return
        self.cancel()
        self.connection._stalled()

    def cancel(self) -> None:
        self.watcher.close()
        self.timer.close()
        self.pending = None
        connection = self.connection
        if connection.write_wait is self:
            connection.writer = connection.write_wait = None
            connection.backlogged = False
            connection.over_since = 0.0


def _unsent(sock: socket.socket) -> int | None:
    """Bytes the kernel holds for ``sock`` that the client has not acknowledged
    (Linux's SIOCOUTQ); None where the system cannot tell."""
    try:
        answer = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except (OSError, AttributeError):
        return None
    return int.from_bytes(answer, sys.byteorder, signed=True)


def _take_batch(queue: collections.deque[bytes]) -> list[bytes]:
    """The next frames to write as one, up to WRITE_BATCH bytes (or one frame).

    A frame never joins a batch it would push past WRITE_BATCH: joining copies,
    and a big frame goes out alone, as the object every subscriber shares.
    """
    frame = queue.popleft()
    batch, size = [frame], len(frame)
    while queue and size + len(queue[0]) <= WRITE_BATCH:
        frame = queue.popleft()
        batch.append(frame)
        size += len(frame)
    return batch
