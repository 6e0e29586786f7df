"""A connection's sending side: the send queue, the write wait, the slow-client rules.

One writer at a time per connection: an event-loop callback, scheduled when
the queue gets a frame, that writes what the kernel takes without waiting;
only when the kernel refuses bytes does a write watcher (with a deadline) take
over until the queue is empty. An update that arrives alone skips the queue:
``send()`` writes it at once when nothing is queued ahead of it
(``Gateway.dispatch`` sets ``Shared.write_through``).

``send()`` never blocks, and a client is judged by whether it keeps up over
time, never by what one dispatch queued before its writer ran:

- "stalled": the client took no byte for ``WRITE_TIMEOUT`` (its socket accepted
  nothing and the kernel's buffer toward it did not drain); the TCP connection
  is dropped (a half-written frame leaves no room for a close frame);
- "backlog": while the kernel refuses bytes, what is queued behind stayed past
  ``SEND_QUEUE_SIZE`` / ``SEND_QUEUE_BYTES`` for ``BACKLOG_GRACE`` and kept
  growing; the client is closed with 4008.

``Writer`` is the sending half of a ``Connection`` (its base class: a
delivery costs one method call, as before the split, and an idle connection
no second object). It decides; the connection acts, told through the
callbacks ``written``, ``write_failed`` and ``too_slow``.

Frames are shared: the hub encodes an update once and the same bytes object
sits in every queue; a partial write keeps a view of the frame it cut, never a
copy.
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

from pushy.gateway.shared import Shared

logger = logging.getLogger(__name__)

# Frames that queued up while a write was in progress go out in one write
# (fewer system calls under load), up to about this many bytes.
WRITE_BATCH = 64 * 1024
# How long a backlog may stay past SEND_QUEUE_SIZE / SEND_QUEUE_BYTES while more
# frames keep coming, before its client counts as too slow: longer than a burst
# takes to dispatch, far shorter than WRITE_TIMEOUT (see docs/decisions.md).
BACKLOG_GRACE = 1.0
# The two rules that make a client too slow, as logged and counted.
STALLED = "stalled"
BACKLOG = "backlog"

_WRITE = 2


class Writer:
    """The sending half of a connection on the non-blocking socket ``sock``."""

    __slots__ = (
        "sock", "shared", "queue", "queued_bytes", "writer", "write_wait",
        "backlogged", "over_since", "sealed", "held", "diverted",
    )  # fmt: skip

    def __init__(self, sock: socket.socket, shared: Shared) -> None:
        self.sock = sock
        self.shared = shared
        self.queue: collections.deque[bytes] = collections.deque()
        self.queued_bytes = 0
        # None, a scheduled _flush callback, or a _WriteWait: never two.
        self.writer: Any = None
        self.write_wait: _WriteWait | None = None
        # While the kernel refuses bytes, what is queued is a backlog;
        # over_since: when it went past the bound (0: not).
        self.backlogged = False
        self.over_since = 0.0
        self.sealed = False  # takes no more frames (a close is queued, or aborted)
        # Frames kept aside while a replay is read (hold()); None: not holding.
        self.held: list[bytes] | None = None
        # Sealed or holding: send()'s one test for both (its hot path).
        self.diverted = False

    # What the writer reports; the connection acts on it.

    def written(self) -> None:
        """The queue is empty: everything queued is with the kernel."""
        raise NotImplementedError

    def write_failed(self) -> None:
        """The socket refused a write with an error: end the connection now."""
        raise NotImplementedError

    def too_slow(self, rule: str, detail: str) -> None:
        """A slow-client rule fired (STALLED or BACKLOG)."""
        raise NotImplementedError

    # Sending.

    def send(self, frame: bytes) -> None:
        """Queue ``frame``; never blocks. See the module docstring for when a
        client counts as too slow."""
        if self.diverted:  # sealed, or holding (then held is a list)
            if self.held is not None:
                self._keep(frame)
            return
        if self.writer is None:
            if self.shared.write_through and not self.queue:
                self._write_through(frame)  # nothing ahead of it to keep order with
                return
            self.writer = self.shared.loop.run_callback(self._flush)
        # _enqueue's work, inline: this line runs once per delivery.
        self.queue.append(frame)
        self.queued_bytes += len(frame)
        if self.backlogged:
            self._check_backlog()

    def hold(self) -> None:
        """Keep what is sent from now on aside, until ``release()``: the updates
        a returning client missed (read from Redis meanwhile) go out first, and
        live ones that are among them once (pushy/gateway/replay.py)."""
        if not self.sealed:
            self.held, self.diverted = [], True

    def release(self, first: list[bytes]) -> None:
        """Send ``first``, then what was held but not in ``first``; hold no more."""
        held, self.held = self.held, None
        self.diverted = self.sealed
        for frame in first:
            self.send(frame)
        if held:
            sent = set(first)
            for frame in held:
                if frame not in sent:
                    self.send(frame)

    def _keep(self, frame: bytes) -> None:
        held = self.held
        if len(held) < self.shared.limits.queue_size:
            held.append(frame)
            return
        # Too much to keep aside: send it all in order, holding no more (the
        # replay, finding nothing held, resyncs instead: ``holding``).
        self.held, self.diverted = None, self.sealed
        for kept in held:
            self.send(kept)
        self.send(frame)

    @property
    def holding(self) -> bool:
        return self.held is not None

    def send_last(self, frame: bytes) -> None:
        """Queue ``frame`` (a close frame) last: nothing is queued after it."""
        if not self.sealed:
            self.held = None  # what a replay held: not sent, the client goes
            self._enqueue(frame)
            self.sealed = self.diverted = True

    def discard(self) -> None:
        """Forget the frames queued (a slow client's: a close goes next)."""
        self.queue.clear()
        self.queued_bytes = 0

    def stop_writing(self) -> None:
        """Take no more frames, forget those queued, stop waiting for the socket."""
        self.sealed = self.diverted = True
        self.held = None
        self.discard()
        if self.write_wait is not None:
            self.write_wait.cancel()

    def flush_now(self) -> bool:
        """Write what waits for the loop callback now; whether a write wait
        still holds the socket (it then closes it within WRITE_TIMEOUT)."""
        if self.writer is not None and self.write_wait is None:
            self.writer.stop()
            self._flush()
        return self.write_wait is not None

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
            self.shared.stats.frames_out += 1
            return
        self.backlogged = True
        self.writer = self.write_wait = _WriteWait(self, memoryview(frame)[sent:])

    def _enqueue(self, frame: bytes) -> None:
        self.queue.append(frame)
        self.queued_bytes += len(frame)
        if self.writer is None:
            # The writer is first a loop callback: it runs after the current
            # dispatch, never inside it, and costs no greenlet and no timer.
            self.writer = self.shared.loop.run_callback(self._flush)

    def _check_backlog(self) -> None:
        """Rule "backlog": past the bound for BACKLOG_GRACE, and still growing.

        Only called while the kernel refuses bytes, so what a dispatch queues
        before the writer had its turn never counts.
        """
        if self.within_bounds():
            return
        now = time.monotonic()
        if not self.over_since:
            self.over_since = now
        elif now - self.over_since >= BACKLOG_GRACE:
            self.too_slow(
                BACKLOG,
                f"{self.queued_bytes} bytes in {len(self.queue)} frames waiting, "
                f"past the bound for {now - self.over_since:.1f}s",
            )

    def within_bounds(self) -> bool:
        limits = self.shared.limits
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
            pending = self.write_nowait()
        except OSError:
            self.write_failed()
            return
        if pending is not None:
            self.backlogged = True
            self.writer = self.write_wait = _WriteWait(self, pending)
            return
        self.written()

    def write_nowait(self) -> memoryview | None:
        """Write queued frames while the kernel takes them, never waiting.

        Returns None once the queue is empty, or the unsent end of the frame
        the kernel refused (the frames after it go back to the queue).
        """
        queue, stats = self.queue, self.shared.stats
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
        self.shared.stats.frames_out += index
        rest = batch[index + 1 :]
        if rest:
            self.queue.extendleft(reversed(rest))
            self.queued_bytes += sum(map(len, rest))
        return memoryview(frame)[sent - done :]

    def _stalled(self) -> None:
        if not self.sealed:
            self.too_slow(
                STALLED,
                f"the client took no byte for {self.shared.limits.write_timeout:g}s",
            )
        self.write_failed()

    def _wait_done(self, wait: _WriteWait) -> None:
        if self.write_wait is wait:
            self.writer = self.write_wait = None
            self.backlogged = False
            self.over_since = 0.0


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

    __slots__ = ("writer", "pending", "watcher", "timer", "held")

    def __init__(self, writer: Writer, pending: memoryview) -> None:
        self.writer = writer
        self.pending: memoryview | None = pending
        loop = writer.shared.loop
        self.watcher = loop.io(writer.sock.fileno(), _WRITE)
        self.watcher.start(self._writable)
        timeout = writer.shared.limits.write_timeout
        # Repeating, so that again() restarts the whole wait (a stopped libev
        # timer restarts with only what was left of it).
        self.timer = loop.timer(timeout, timeout)
        self._start_deadline()

    def _start_deadline(self) -> None:
        self.held = _unsent(self.writer.sock)
        self.timer.again(self._deadline)

    def _writable(self) -> None:
        writer = self.writer
        try:
            progressed = self._write()
        except Exception as e:
            if not isinstance(e, OSError):
                logger.exception("closing a connection after an unexpected error")
            self.cancel()
            writer.write_failed()
            return
        if self.pending is None:
            self.cancel()
            writer.written()
        elif progressed:
            self._start_deadline()  # the client took bytes: a new wait

    def _write(self) -> bool:
        """Write the pending end, then the queue, until the kernel refuses
        bytes or all is out; whether any byte went out."""
        writer, progressed = self.writer, False
        while self.pending is not None:
            if writer.over_since and writer.within_bounds():
                writer.over_since = 0.0
            try:
                sent = writer.sock.send(self.pending)
            except (BlockingIOError, InterruptedError):
                return progressed
            progressed = True
            self.pending = self.pending[sent:]
            if not self.pending:
                writer.shared.stats.frames_out += 1
                self.pending = writer.write_nowait()
        return progressed

    def _deadline(self) -> None:
        held = _unsent(self.writer.sock)
        if self.held is not None and held is not None and held < self.held:
            self.held = held  # the client is reading: not stalled; wait again
            return
        self.cancel()
        self.writer._stalled()

    def cancel(self) -> None:
        self.watcher.close()
        self.timer.close()
        self.pending = None
        self.writer._wait_done(self)


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
