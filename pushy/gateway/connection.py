"""One WebSocket client: its read loop, its bounded send queue and its writer.

Reading happens in the greenlet that accepted the connection. Writing has one
writer at a time per connection: an event-loop callback, scheduled when the
queue gets a frame, that writes what the kernel takes without waiting; only
when the kernel refuses bytes does a writer greenlet take over, waiting with a
deadline, until the queue is empty. So an idle connection costs no greenlet
beyond its reader, and a fast one no greenlet or timer per update.

``send()`` never blocks, and a client is judged by whether it keeps up over
time, never by what one dispatch queued before its writer ran:

- "stalled": the client took no byte for ``WRITE_TIMEOUT`` (its socket accepted
  nothing and the kernel's buffer toward it did not drain); the TCP connection
  is dropped (a half-written frame leaves no room for a close frame);
- "backlog": while the kernel refuses bytes (a writer greenlet waits), what is
  queued behind stayed past ``SEND_QUEUE_SIZE`` / ``SEND_QUEUE_BYTES`` for
  ``BACKLOG_GRACE`` and kept growing; the client is closed with 4008.

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
from typing import Any, BinaryIO

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


class Connection:
    """A client of ``gateway``: reads from ``rfile``, writes to ``sock``."""

    __slots__ = (
        "gateway", "sock", "rfile", "session_key", "urls", "url_bytes", "queue",
        "queued_bytes", "writer", "backlogged", "over_since", "closing",
        "last_seen", "tokens", "tokens_at", "__weakref__",
    )  # fmt: skip

    def __init__(
        self, gateway: Any, sock: socket.socket, rfile: BinaryIO, session_key: Any
    ) -> None:
        self.gateway = gateway
        self.sock = sock
        self.rfile = rfile
        self.session_key = session_key
        self.urls: set[str] = set()
        self.url_bytes = 0  # UTF-8 bytes of self.urls (MAX_SUBSCRIPTION_BYTES)
        self.queue: collections.deque[bytes] = collections.deque()
        self.queued_bytes = 0
        # None, a scheduled _flush callback, or the writer greenlet: never two.
        self.writer: Any = None
        # While a writer greenlet waits (the kernel refused bytes), what is
        # queued is a backlog; over_since: when it went past the bound (0: not).
        self.backlogged = False
        self.over_since = 0.0
        self.closing = False
        self.last_seen = time.monotonic()
        self.tokens = float(gateway.limits.burst)
        self.tokens_at = self.last_seen

    # Reading -------------------------------------------------------------

    def serve(self) -> None:
        """Run until the client leaves or is closed; always unregisters."""
        hub = self.gateway.hub
        hub.add(self)
        try:
            self._read_loop()
        except Exception:
            # The boundary of one connection: a bug here must not go unseen,
            # and must cost this client only (1011), never the process.
            logger.exception("closing a connection after an unexpected error")
            self.close(frames.CLOSE_INTERNAL_ERROR, "internal error")
        finally:
            hub.remove(self)
            self._finish_writing()

    def _read_loop(self) -> None:
        reader = frames.FrameReader(self.rfile, self.gateway.limits.max_message)
        while True:
            self._take_token()
            try:
                opcode, payload = reader.read_message()
            except frames.ProtocolError as e:
                self.gateway.stats.errors += 1
                self.close(e.code, e.reason)
                return
            except (frames.ConnectionClosed, OSError):
                return
            self.last_seen = time.monotonic()
            if opcode == frames.OP_CLOSE:
                self._answer_close(payload)
                return
            if not self._on_frame(opcode, payload):
                return

    def _take_token(self) -> None:
        """Rate limit: with no token left, stop reading until one returns."""
        limits = self.gateway.limits
        now = time.monotonic()
        elapsed, self.tokens_at = now - self.tokens_at, now
        self.tokens = min(limits.burst, self.tokens + elapsed * limits.rate)
        if self.tokens < 1:
            gevent.sleep((1 - self.tokens) / limits.rate)
            self.tokens = 1.0
            self.tokens_at = time.monotonic()
        self.tokens -= 1

    def _on_frame(self, opcode: int, payload: bytes) -> bool:
        """Handle one frame; False ends the read loop."""
        if opcode == frames.OP_PING:
            self.send(frames.build_frame(frames.OP_PONG, payload))
        elif opcode == frames.OP_TEXT:
            self.gateway.stats.messages_in += 1
            self.gateway.protocol.handle(self, payload)
        elif opcode == frames.OP_BINARY:
            self.gateway.stats.errors += 1
            self.close(frames.CLOSE_UNSUPPORTED, "binary messages are not accepted")
            return False
        return not self.closing

    def _answer_close(self, payload: bytes) -> None:
        if self.closing:
            return  # The client answered our close: the handshake is complete.
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
        self._enqueue(frame)
        if self.backlogged:
            self._check_backlog()

    def _enqueue(self, frame: bytes) -> None:
        self.queue.append(frame)
        self.queued_bytes += len(frame)
        if self.writer is None:
            # The writer is first a loop callback: it runs after the current
            # dispatch, never inside it, and costs no greenlet and no timer.
            self.writer = self.gateway.loop.run_callback(self._flush)

    def _check_backlog(self) -> None:
        """Rule "backlog": past the bound for BACKLOG_GRACE, and still growing.

        Only called while the kernel refuses bytes (a writer greenlet waits),
        so what a dispatch queues before the writer had its turn never counts.
        """
        limits = self.gateway.limits
        if len(self.queue) <= limits.queue_size and (
            self.queued_bytes <= limits.queue_bytes
        ):
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
        """Write without waiting; hand what the kernel refuses to a writer greenlet.

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
            self.writer = gevent.spawn(self._write_loop, pending)
            return
        if self.closing:
            self._after_close_sent()

    def _write_nowait(self) -> memoryview | None:
        """Write queued frames while the kernel takes them, never waiting.

        Returns None once the queue is empty, or the unsent end of the frame
        the kernel refused (the frames after it go back to the queue).
        """
        queue, stats = self.queue, self.gateway.stats
        while queue:
            batch = _take_batch(queue)
            data = b"".join(batch)  # one frame: the same object, no copy
            self.queued_bytes -= len(data)
            try:
                sent = self.sock.send(data, 0, 0.0)  # timeout 0: never waits
            except (BlockingIOError, TimeoutError):
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

    def _write_loop(self, pending: memoryview | None) -> None:
        """The writer greenlet: wait until the kernel takes ``pending`` (the rest
        of a frame it refused), then write the queue, until it is empty."""
        try:
            while pending is not None:
                if self.over_since and self._within_bounds():
                    self.over_since = 0.0
                self._write_waiting(pending)
                pending = self._write_nowait()
        except _Stalled:
            if not self.closing:
                self._too_slow(
                    STALLED,
                    "the client took no byte for "
                    f"{self.gateway.limits.write_timeout:g}s",
                )
            self.abort()
        except OSError:
            self.abort()
        finally:
            self.writer = None
            self.backlogged = False
            self.over_since = 0.0
        if self.closing:
            self._after_close_sent()

    def _write_waiting(self, pending: memoryview) -> None:
        """Rule "stalled": each wait for the kernel to take a byte is bounded by
        WRITE_TIMEOUT; any progress starts a new wait.

        The kernel calls a socket writable again only once a good part of its
        buffer (up to 4 MB) has drained, which takes a slow reader longer than
        WRITE_TIMEOUT while it is reading all along. So when the wait runs out,
        the bytes the kernel still holds for the client are compared with those
        it held when the wait began: fewer means the client took some, and the
        wait starts again.
        """
        timeout = self.gateway.limits.write_timeout
        while pending:
            held = _unsent(self.sock)
            deadline = gevent.Timeout(timeout, _Stalled)
            deadline.start()
            try:
                sent = self.sock.send(pending)  # waits until the socket is writable
            except _Stalled:
                now_held = _unsent(self.sock)
                if held is None or now_held is None or now_held >= held:
                    raise
                continue  # the client is reading: not stalled
            finally:
                deadline.close()
            pending = pending[sent:]
        self.gateway.stats.frames_out += 1

    def _too_slow(self, rule: str, detail: str) -> None:
        """Close a client that does not keep up; ``rule`` says which rule fired."""
        logger.info("closing a slow client (%s: %s)", rule, detail)
        stats = self.gateway.stats
        stats.slow_closes += 1
        if rule == STALLED:
            stats.slow_closes_stalled += 1
            # A frame is half written: no room for a close frame. The caller
            # (the writer) aborts the connection.
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
        # The reader either has the client's close already (it returned) or
        # waits for it; a client that never answers is cut off after CLOSE_WAIT.
        gevent.spawn_later(CLOSE_WAIT, self.abort)

    def abort(self) -> None:
        """End the TCP connection now; the reader sees EOF and cleans up."""
        self.closing = True
        self.queue.clear()
        self.queued_bytes = 0
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _finish_writing(self) -> None:
        """Before the socket closes: send what is queued (a close frame, often)."""
        if self.writer is not None and not isinstance(self.writer, gevent.Greenlet):
            self.writer.stop()  # a pending _flush: run it now instead
            self._flush()
        writer = self.writer
        if writer is not None:
            writer.join(self.gateway.limits.write_timeout)
            writer.kill(block=False)


class _Stalled(Exception):
    """Raised in a writer whose wait for the client reached WRITE_TIMEOUT."""


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
