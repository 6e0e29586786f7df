"""Accepting connections and reading each request's head, with no greenlet.

The listening socket's read watcher accepts what is waiting; each new socket
is read at once (a client usually sends its request right after connecting)
and, if its head is not complete yet, gets a read watcher and a deadline
(``HANDSHAKE_TIMEOUT``: a silent client and one that trickles bytes are cut
off alike). A complete head goes to the ``on_request`` callback. So a
handshake costs no greenlet and, in a reconnect storm, mostly no watcher.

What heads still arriving may hold is bounded twice: one address may have
``MAX_CONNECTIONS_PER_CLIENT`` of them (``Admission.hold_head``), and all of
them together may hold ``MAX_HEAD_BYTES_READING`` bytes; past either, the
request is answered ``503`` with ``Retry-After`` and closed at once.

Out of file descriptors (or kernel memory), ``accept()`` fails until some
connection closes. Instead of retrying at once, forever, the acceptor pauses
(0.05 s, doubling up to 1 s while it lasts; waiting clients stay in the
listen backlog), counts the pause in /metrics and logs at most once a minute.
"""

from __future__ import annotations

import _socket
import errno
import logging
import socket
from typing import Any

import gevent
from gevent.socket import wait_write

from pushy.gateway.admission import Admission, over_limit
from pushy.gateway.handshake import MAX_HEAD, Refusal, head_end
from pushy.gateway.shared import RequestHandler, Shared
from pushy.logs import Throttled

logger = logging.getLogger(__name__)

# accept() errors that mean "no descriptor or memory for one more socket now".
OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# Connections accepted per wake-up, so a storm of them cannot starve the loop.
ACCEPT_BATCH = 256
HEAD_READ = 4096
# The most bytes the request heads still arriving may hold together (a head
# holds at most MAX_HEAD, 64 KiB): 256 whole heads, or thousands of the usual
# ones, which arrive whole with their first read and are never counted here.
MAX_HEAD_BYTES_READING = 16 * 1024 * 1024
_READ = 1


class Acceptor:
    """Accepts on ``listen_socket`` and hands complete request heads to ``on_request``.

    ``admission`` holds a place for each head still arriving (admission.py).
    """

    min_pause = 0.05
    max_pause = 1.0

    def __init__(
        self,
        listen_socket: socket.socket,
        shared: Shared,
        admission: Admission,
        on_request: RequestHandler,
    ) -> None:
        self.shared = shared
        self.admission = admission
        self.on_request = on_request
        self.loop = shared.loop
        self.family = listen_socket.family
        # The plain C socket: accept() without gevent's wrapper objects.
        fd = listen_socket.detach()
        self.sock = _socket.socket(self.family, socket.SOCK_STREAM, 0, fd)
        self.sock.setblocking(False)
        self.address = self.sock.getsockname()
        self.watcher = self.loop.io(self.sock.fileno(), _READ)
        self.pending: set[PendingRequest] = set()
        self.head_bytes = 0  # what the heads in self.pending hold together
        self.pause = self.min_pause
        self._timer: Any = None
        self._log_pause = Throttled(logger)
        self._log_heads = Throttled(logger)

    def start(self) -> None:
        self.watcher.start(self._accept)

    def close(self) -> None:
        """Stop accepting; drop the requests whose head is not in yet."""
        self.watcher.close()
        if self._timer is not None:
            self._timer.close()
        for request in list(self.pending):
            request.drop()
        self.sock.close()

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                fd, address = self.sock._accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in OUT_OF_RESOURCES:
                    self._pause_accepting(e)
                    return
                continue  # ECONNABORTED and the like: that client only
            self.pause = self.min_pause
            try:
                PendingRequest(self, self._wrap(fd), address).start()
            except Exception:
                logger.exception("dropped a new connection after an unexpected error")

    def _wrap(self, fd: int) -> _socket.socket:
        sock = _socket.socket(self.family, socket.SOCK_STREAM, 0, fd)
        sock.setblocking(False)
        if self.family != socket.AF_UNIX:
            # Updates are small frames that must go out now, not wait for the
            # ACK of the one before (Nagle's algorithm).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _pause_accepting(self, error: OSError) -> None:
        self.shared.stats.accept_pauses += 1
        self._log_pause.log(
            logging.ERROR,
            "cannot accept connections (%s): pausing accepts for up to %.0f s at a "
            "time; raise the open-file limit (LimitNOFILE) or lower MAX_CONNECTIONS",
            error.strerror or error,
            self.max_pause,
        )
        self.watcher.stop()
        self._timer = self.loop.timer(self.pause)
        self._timer.start(self._resume_accepting)
        self.pause = min(self.max_pause, self.pause * 2)

    def _resume_accepting(self) -> None:
        self._timer.close()
        self._timer = None
        if self.sock.fileno() >= 0:
            self.watcher.start(self._accept)


class PendingRequest:
    """A new connection until its request's head is in."""

    __slots__ = (
        "acceptor", "sock", "remote_addr", "buffer", "watcher", "timer", "client",
    )  # fmt: skip

    def __init__(self, acceptor: Acceptor, sock: _socket.socket, address: Any) -> None:
        self.acceptor = acceptor
        self.sock = sock
        self.remote_addr = address[0] if isinstance(address, tuple) else ""
        self.buffer = b""
        self.watcher: Any = None
        self.timer: Any = None
        self.client: str | None = None  # what Admission.hold_head counted it as

    def start(self) -> None:
        if self._read():
            return
        # The head is not all in: it waits, and counts while it does.
        acceptor = self.acceptor
        try:
            self.client = acceptor.admission.hold_head(self.remote_addr)
        except Refusal as refusal:
            self._refuse(refusal)
            return
        loop = acceptor.loop
        self.watcher = loop.io(self.sock.fileno(), _READ)
        self.watcher.start(self._readable)
        self.timer = loop.timer(acceptor.shared.limits.handshake_timeout)
        self.timer.start(self.drop)
        acceptor.pending.add(self)
        acceptor.head_bytes += len(self.buffer)
        self._check_bytes()

    def _readable(self) -> None:
        try:
            self._read()
        except Exception:
            logger.exception("dropped a handshake after an unexpected error")
            self.drop()

    def _read(self) -> bool:
        """Read what arrived; True once this request is done with."""
        try:
            chunk = self.sock.recv(HEAD_READ)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            self.drop()
            return True
        if not chunk:
            self.drop()
            return True
        searched = len(self.buffer)
        self.buffer += chunk
        if self.watcher is not None:
            self.acceptor.head_bytes += len(chunk)
        # Only where the new bytes may complete the empty line (at most 4 bytes).
        end = head_end(self.buffer, max(0, searched - 3))
        if end < 0 and len(self.buffer) <= MAX_HEAD:
            return self.watcher is not None and self._check_bytes()
        if end < 0 or end > MAX_HEAD:
            self._stop_waiting()
            refusal = Refusal("431 Request Header Fields Too Large", "head too long")
            answer_and_close(self.sock, refusal.response())
            return True
        self._stop_waiting()
        head, rest = self.buffer[:end], self.buffer[end:]
        self.buffer = b""
        try:
            self.acceptor.on_request(self.sock, head, rest, self.remote_addr)
        except Exception:
            # The boundary of one request: it costs that client only.
            logger.exception("dropped a request after an unexpected error")
            self.sock.close()
        return True

    def _check_bytes(self) -> bool:
        """Refuse this request if the heads being read hold too much; True if so."""
        acceptor = self.acceptor
        if acceptor.head_bytes <= MAX_HEAD_BYTES_READING:
            return False
        acceptor._log_heads.log(
            logging.WARNING,
            "refusing requests (503): the heads being read hold %d bytes, "
            "MAX_HEAD_BYTES_READING is %d",
            acceptor.head_bytes,
            MAX_HEAD_BYTES_READING,
        )
        self._refuse(over_limit("the gateway is busy"))
        return True

    def _refuse(self, refusal: Refusal) -> None:
        """Answer 503 and close, without reading the rest of the head."""
        self._stop_waiting()
        self.acceptor.shared.stats.handshakes_refused += 1
        answer_and_close(self.sock, refusal.response())

    def _stop_waiting(self) -> None:
        """Stop reading: uncount this head (it is in, or it is dropped)."""
        if self.watcher is not None:
            self.watcher.close()
            self.timer.close()
            self.watcher = self.timer = None
            acceptor = self.acceptor
            acceptor.pending.discard(self)
            acceptor.head_bytes -= len(self.buffer)
            acceptor.admission.release_head(self.client)
            self.client = None
        elif self.client is not None:  # refused before it waited
            self.acceptor.admission.release_head(self.client)
            self.client = None

    def drop(self) -> None:
        """Close without an answer: the client left, or took too long."""
        self._stop_waiting()
        self.sock.close()


# How long a plain HTTP answer may take to go out (it nearly always fits the
# socket's buffer at once).
ANSWER_TIMEOUT = 10.0


def answer_and_close(sock: _socket.socket, data: bytes) -> None:
    """Send a whole HTTP answer, then close: at once when the kernel takes it
    all, else from a greenlet, within ANSWER_TIMEOUT."""
    try:
        sent = sock.send(data)
    except (BlockingIOError, InterruptedError):
        sent = 0
    except OSError:
        sock.close()
        return
    if sent == len(data):
        _close_after_answer(sock)
        return
    gevent.spawn(_send_rest, sock, memoryview(data)[sent:])


def _send_rest(sock: _socket.socket, rest: memoryview) -> None:
    try:
        with gevent.Timeout(ANSWER_TIMEOUT):
            while rest:
                wait_write(sock.fileno())
                try:
                    rest = rest[sock.send(rest) :]
                except (BlockingIOError, InterruptedError):
                    continue
    except (OSError, gevent.Timeout):
        pass
    _close_after_answer(sock)


def _close_after_answer(sock: _socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    sock.close()
