"""One WebSocket client: its read loop, its bounded send queue and its writer.

Reading happens in the greenlet that accepted the connection. Writing has one
writer at a time per connection: an event-loop callback, scheduled when the
queue gets a frame, that writes what the kernel takes without waiting; only
when the kernel refuses bytes does a writer greenlet take over, waiting with a
deadline, until the queue is empty. So an idle connection costs no greenlet
beyond its reader, and a fast one no greenlet or timer per update.

``send()`` never blocks: a client whose queue overflows (in messages or bytes)
is closed with 4008, and one whose write stalls past
``WRITE_TIMEOUT`` is dropped (a half-written frame leaves no room for a close
frame); both count as slow closes.
"""

from __future__ import annotations

import collections
import json
import logging
import socket
import time
from typing import Any, BinaryIO

import gevent

from pushy.gateway import frames
from pushy.gateway.hub import message_frame

logger = logging.getLogger(__name__)

PONG_FRAME = message_frame({"type": "pong"})
MAX_URL_LENGTH = 2048
# Frames that queued up while a write was in progress go out in one write
# (fewer system calls under load), up to about this many bytes.
WRITE_BATCH = 64 * 1024
# How long a closing handshake we started may wait for the client's close frame.
CLOSE_WAIT = 2.0


class Connection:
    """A client of ``gateway``: reads from ``rfile``, writes to ``sock``."""

    __slots__ = (
        "gateway", "sock", "rfile", "session_key", "urls", "queue",
        "queued_bytes", "writer", "closing", "last_seen", "tokens", "tokens_at",
        "__weakref__",
    )  # fmt: skip

    def __init__(
        self, gateway: Any, sock: socket.socket, rfile: BinaryIO, session_key: Any
    ) -> None:
        self.gateway = gateway
        self.sock = sock
        self.rfile = rfile
        self.session_key = session_key
        self.urls: set[str] = set()
        self.queue: collections.deque[bytes] = collections.deque()
        self.queued_bytes = 0
        # None, a scheduled _flush callback, or the writer greenlet: never two.
        self.writer: Any = None
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
        """Queue ``frame``; never blocks. Overflow closes the client with 4008."""
        if self.closing:
            return
        limits = self.gateway.limits
        if (
            len(self.queue) >= limits.queue_size
            or self.queued_bytes + len(frame) > limits.queue_bytes
        ):
            self._too_slow("send queue full")
            return
        self._enqueue(frame)

    def _enqueue(self, frame: bytes) -> None:
        self.queue.append(frame)
        self.queued_bytes += len(frame)
        if self.writer is None:
            # The writer is first a loop callback: it runs after the current
            # dispatch, never inside it, and costs no greenlet and no timer.
            self.writer = self.gateway.loop.run_callback(self._flush)

    def _flush(self) -> None:
        """Write without waiting; hand what the kernel refuses to a writer greenlet.

        Runs as an event-loop callback, so it must never block or raise.
        """
        self.writer = None
        queue, stats = self.queue, self.gateway.stats
        while queue:
            data, count = _take_batch(queue)
            self.queued_bytes -= len(data)
            try:
                sent = self.sock.send(data, 0, 0.0)  # timeout 0: never waits
            except (BlockingIOError, TimeoutError):
                sent = 0
            except OSError:
                self.abort()
                return
            if sent < len(data):
                # The rest stays with the writer, out of the queue, so dropping
                # the queue (4008) can never cut a frame in two.
                self.writer = gevent.spawn(self._write_loop, data[sent:], count)
                return
            stats.frames_out += count
        if self.closing:
            self._after_close_sent()

    def _write_loop(self, data: bytes, count: int) -> None:
        """Send ``data`` (the unsent end of ``count`` frames), then the queue."""
        queue, stats = self.queue, self.gateway.stats
        timeout = self.gateway.limits.write_timeout
        try:
            while True:
                with gevent.Timeout(timeout):
                    self.sock.sendall(data)
                stats.frames_out += count
                if not queue:
                    break
                data, count = _take_batch(queue)
                self.queued_bytes -= len(data)
        except gevent.Timeout:
            if not self.closing:
                stats.slow_closes += 1
            self.closing = True
            self.abort()
        except OSError:
            self.abort()
        finally:
            self.writer = None
        if self.closing:
            self._after_close_sent()

    def _too_slow(self, why: str) -> None:
        logger.info("closing a slow client (%s)", why)
        self.gateway.stats.slow_closes += 1
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


def _take_batch(queue: collections.deque[bytes]) -> tuple[bytes, int]:
    """Frames queued so far, up to about WRITE_BATCH bytes, as one write."""
    if len(queue) == 1:
        return queue.popleft(), 1
    batch, size = [], 0
    while queue and size < WRITE_BATCH:
        frame = queue.popleft()
        batch.append(frame)
        size += len(frame)
    return b"".join(batch), len(batch)


class Protocol:
    """Protocol v1: the client's JSON requests and the gateway's answers."""

    def __init__(self, gateway: Any) -> None:
        self.gateway = gateway

    def handle(self, connection: Connection, payload: bytes) -> None:
        try:
            request = json.loads(payload)
        except (ValueError, RecursionError):  # RecursionError: nesting too deep
            self.error(connection, "invalid", "not JSON")
            return
        action = request.get("action") if isinstance(request, dict) else None
        if action == "ping":
            connection.send(PONG_FRAME)
        elif action in ("subscribe", "unsubscribe"):
            url = request.get("url")
            if not _valid_url(url):
                self.error(connection, "invalid", "url must be a URL string", url)
            elif action == "subscribe":
                self.subscribe(connection, url)
            else:
                self.gateway.hub.unsubscribe(connection, url)
                connection.send(message_frame({"type": "unsubscribed", "url": url}))
        else:
            self.error(connection, "invalid", "unknown action")

    def subscribe(self, connection: Connection, url: str) -> None:
        gateway = self.gateway
        if url not in connection.urls:
            if len(connection.urls) >= gateway.limits.max_subscriptions:
                self.error(connection, "limit", "too many subscriptions", url)
                return
            if not self._allowed(connection, url):
                self.error(connection, "forbidden", "not allowed", url)
                return
            gateway.hub.subscribe(connection, url)
        connection.send(message_frame({"type": "subscribed", "url": url}))

    def _allowed(self, connection: Connection, url: str) -> bool:
        # Blocks this reader until answered, so one connection never has more
        # than one subscribe decision waiting in the pool (see docs/protocol.md).
        authorizer = self.gateway.authorizer
        if not authorizer.needed:
            return True
        try:
            return authorizer.allows(connection.session_key, url)
        except Exception:
            logger.exception("authorization failed for %s: refusing", url)
            return False

    def error(
        self, connection: Connection, code: str, message: str, url: Any = None
    ) -> None:
        self.gateway.stats.errors += 1
        body: dict[str, Any] = {"type": "error", "code": code, "message": message}
        if isinstance(url, str):
            body["url"] = url[:MAX_URL_LENGTH]
        connection.send(message_frame(body))


def _valid_url(url: Any) -> bool:
    return (
        isinstance(url, str)
        and 0 < len(url) <= MAX_URL_LENGTH
        and url.isprintable()
        and not url.isspace()
    )
