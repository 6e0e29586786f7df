"""One WebSocket client, driven by the event loop: no greenlet while it is idle.

An idle connection is a socket, one read watcher and this object. Reading is
an event-loop callback: when the socket is readable, what arrived goes into the
connection's ``FrameParser`` and the complete messages are handled at once,
in the callback. A step that must wait (an authorization that is not cached,
a version lookup in Redis: see actions.py) runs in a short-lived greenlet
(``wait_for``), and reading pauses until it is done, so messages are handled
in order and a client cannot queue work by sending faster than it is
answered. The rate limit pauses reading the same way.

Writing is the ``Writer``'s (writer.py, this class's base): the send queue,
the write wait and the slow-client rules; it reports back through the
callbacks ``written``, ``write_failed`` and ``too_slow``, defined here.

The connection's life is one ``State``: OPEN, then CLOSING once a close frame
is queued (or the connection is being cut), then CLOSED once it has left the
hub.
"""

from __future__ import annotations

import enum
import logging
import socket
import time
from typing import Any

import gevent

from pushy.gateway import frames
from pushy.gateway.shared import ConnectionEvents, Shared
from pushy.gateway.writer import BACKLOG, BACKLOG_GRACE, STALLED, WRITE_BATCH, Writer

__all__ = [
    "BACKLOG",
    "BACKLOG_GRACE",
    "CLOSE_WAIT",
    "Connection",
    "STALLED",
    "State",
    "WRITE_BATCH",
]

logger = logging.getLogger(__name__)

# How long a closing handshake we started may wait for the client's close frame.
CLOSE_WAIT = 2.0
# What one read takes from a socket. Reads happen one at a time, in the event
# loop, so every connection reads into this one buffer; the parser keeps only
# the bytes of a frame that is not complete yet.
READ_SIZE = 64 * 1024
_read_buffer = bytearray(READ_SIZE)
_read_view = memoryview(_read_buffer)

_READ = 1


class State(enum.Enum):
    """A connection's life, in this order (websockets' ``State``)."""

    OPEN = 1  # reading and writing
    CLOSING = 2  # a close frame is queued, or the connection is being cut
    CLOSED = 3  # it left the hub; its socket closes once its writer is done


_OPEN, _CLOSING, _CLOSED = State.OPEN, State.CLOSING, State.CLOSED


class Connection(Writer):
    """A client on the non-blocking socket ``sock``; ``send()`` is the writer's."""

    __slots__ = (
        "events", "visitor", "client", "urls", "url_bytes", "parser", "reader",
        "paused", "state", "last_seen", "tokens", "tokens_at", "__weakref__",
    )  # fmt: skip

    def __init__(
        self,
        shared: Shared,
        events: ConnectionEvents,
        sock: socket.socket,
        visitor: Any,
        client: Any = None,
    ) -> None:
        super().__init__(sock, shared)
        self.events = events
        self.visitor = visitor  # who the site would see (visitor.Visitor)
        self.client = client  # the key Admission counts this connection under
        self.urls: set[str] = set()
        self.url_bytes = 0  # UTF-8 bytes of self.urls (MAX_SUBSCRIPTION_BYTES)
        self.parser = frames.FrameParser(shared.limits.max_message)
        self.reader: Any = None  # the read watcher, while reading
        # None, or what reading waits for: a handler greenlet or a rate timer.
        self.paused: Any = None
        self.state = _OPEN
        self.last_seen = time.monotonic()
        self.tokens = float(shared.limits.burst)
        self.tokens_at = self.last_seen

    @property
    def closing(self) -> bool:
        """Whether the connection is no longer open (closing or closed)."""
        return self.state is not _OPEN

    @property
    def finished(self) -> bool:
        """Whether it left the hub."""
        return self.state is _CLOSED

    # Reading -------------------------------------------------------------

    def start(self, received: bytes = b"") -> None:
        """Register with the hub and start reading; ``received``: bytes that
        came after the handshake's head, already read."""
        self.events.joined(self)
        self.reader = self.shared.loop.io(self.sock.fileno(), _READ)
        if received:
            self.parser.feed(received)
            self._guarded(self._handle_messages)
        # Those bytes may have paused reading, or ended it (a close, a bad frame).
        if not self.paused and self.state is not _CLOSED and self.reader is not None:
            self.reader.start(self._on_readable)

    def _on_readable(self) -> None:
        self._guarded(self._read)

    def _guarded(self, step: Any, *args: Any) -> None:
        """Run ``step``; the boundary of one connection: a bug must not go
        unseen, and must cost this client only (1011), never the process."""
        try:
            step(*args)
        except Exception:
            self._internal_error()
            self._stop_reading()

    def _internal_error(self) -> None:
        logger.exception("closing a connection after an unexpected error")
        self.close(frames.CLOSE_INTERNAL_ERROR, "internal error")

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
        while (
            not self.paused and self.state is not _CLOSED and not self._out_of_tokens()
        ):
            try:
                message = parser.next_message()
            except frames.ProtocolError as e:
                self.shared.stats.errors += 1
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
            if self.state is not _OPEN:
                return False
            self.shared.stats.messages_in += 1
            self.events.message(self, payload)
        elif opcode == frames.OP_PING:
            self.send(frames.build_frame(frames.OP_PONG, payload))
        elif opcode == frames.OP_CLOSE:
            self._answer_close(payload)
            return False
        elif opcode == frames.OP_BINARY:
            self.shared.stats.errors += 1
            self.close(frames.CLOSE_UNSUPPORTED, "binary messages are not accepted")
            return False
        return self.state is _OPEN

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
            self._internal_error()
        self.paused = None
        if self.state is _CLOSED:
            # It ended meanwhile: undo what the message may have subscribed.
            self.events.unsubscribe(self)
            return
        self._resume()

    def _out_of_tokens(self) -> bool:
        """Rate limit: with no token left, pause reading until one returns."""
        limits = self.shared.limits
        now = time.monotonic()
        elapsed, self.tokens_at = now - self.tokens_at, now
        self.tokens = min(limits.burst, self.tokens + elapsed * limits.rate)
        if self.tokens >= 1:
            return False
        timer = self.shared.loop.timer((1 - self.tokens) / limits.rate)
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
            self.events.leaving(self)

    def _resume(self) -> None:
        """Handle what is parsed already, then read again (unless paused anew)."""
        if self.state is _CLOSED:
            return
        self._guarded(self._handle_messages)
        if not self.paused and self.reader is not None and self.state is not _CLOSED:
            self.reader.start(self._on_readable)

    def _stop_reading(self) -> None:
        """Read no more: when we sent a close, the socket closes after it."""
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        if self.state is _OPEN:
            self._finish()
        # Closing: the close frame goes out, then written() finishes.

    def _answer_close(self, payload: bytes) -> None:
        if self.state is not _OPEN:
            self._finish()  # the client answered our close: the handshake is complete
            return
        try:
            code, _reason = frames.parse_close(payload)
        except frames.ProtocolError as e:
            self.close(e.code, e.reason)
            return
        self.close(code)

    # Closing (the writer reports here) -----------------------------------

    def close(self, code: int | None, reason: str = "") -> None:
        """Start the closing handshake: queued frames go first, then the close."""
        if self.state is not _OPEN:
            return
        self.state = _CLOSING
        self.send_last(frames.close_frame(code, reason))

    def written(self) -> None:
        """The writer's queue is empty: a closing connection's close frame is out."""
        if self.state is _CLOSED:
            self._close_socket()
        elif self.state is _CLOSING:
            self._after_close_sent()

    def write_failed(self) -> None:
        self.abort()

    def too_slow(self, rule: str, detail: str) -> None:
        """Close a client that does not keep up; ``rule`` says which rule fired."""
        logger.info("closing a slow client (%s: %s)", rule, detail)
        stats = self.shared.stats
        stats.slow_closes += 1
        if rule == STALLED:
            stats.slow_closes_stalled += 1
            # A frame is half written: no room for a close frame. The writer
            # aborts the connection next (write_failed).
            if self.state is _OPEN:
                self.state = _CLOSING
            return
        stats.slow_closes_backlog += 1
        self.discard()
        self.close(frames.CLOSE_TOO_SLOW, "too slow")

    def _after_close_sent(self) -> None:
        # The client answers with its close frame (then _finish), or is cut
        # off after CLOSE_WAIT; reading goes on meanwhile, for that answer.
        if self.reader is None and not self.paused:
            self._finish()
            return
        gevent.spawn_later(CLOSE_WAIT, self.abort)

    def abort(self) -> None:
        """End the TCP connection now."""
        if self.state is _OPEN:
            self.state = _CLOSING
        self.stop_writing()
        self._finish()
        self._close_socket()

    # Ending --------------------------------------------------------------

    def _finish(self) -> None:
        """Leave the hub; the socket closes once what is queued (a close frame,
        often) is written, or at once if nothing is."""
        if self.state is _CLOSED:
            return
        self.state = _CLOSED
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        paused, self.paused = self.paused, None
        if paused is not None and not isinstance(paused, gevent.Greenlet):
            paused.close()  # a rate timer; a handler greenlet ends by itself
        self.events.ended(self)
        if not self.flush_now():
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
