"""A lean, non-blocking WebSocket client connection, for the load client.

The load client holds up to 10,000 connections in one process, so each one is a
small state machine over a non-blocking socket driven by one ``selectors`` loop
(no thread or greenlet per connection), and incoming frames are parsed straight
from the receive buffer. Only what the benchmark needs is here: the RFC 6455
handshake, masked text frames out, unfragmented frames in, pings answered.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# A subscribe answered busy or timeout is asked again, as pushy.js does: after
# RETRY_DELAY seconds, doubling, at most MAX_RETRIES times.
RETRY_DELAY = 0.25
MAX_RETRIES = 6
OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA

# States of a connection, in order.
CONNECTING, HANDSHAKING, SUBSCRIBING, SUBSCRIBED, CLOSED = range(5)


def frame(opcode: int, payload: bytes) -> bytes:
    """A final, masked client frame (clients must mask, RFC 6455 5.3)."""
    size = len(payload)
    if size < 126:
        head = bytes((0x80 | opcode, 0x80 | size))
    elif size < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + size.to_bytes(8, "big")
    key = os.urandom(4)
    if not size:
        return head + key
    # XOR the payload with the repeated key as one big integer: no Python loop.
    repeated = (key * (size // 4 + 1))[:size]
    masked = int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")
    return head + key + masked.to_bytes(size, "big")


def bind_source(sock: socket.socket, address: str) -> None:
    """Connect from ``address`` (e.g. 127.0.0.2), the port still chosen at connect.

    One source address reaches one server port through at most as many
    connections as there are ephemeral ports (ip_local_port_range, ~28,000 by
    default); several loopback addresses lift that for the scale test. Without
    IP_BIND_ADDRESS_NO_PORT, bind() would reserve a port for the address alone,
    and every port would count against every destination.
    """
    no_port = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # Linux >= 4.2
    try:
        sock.setsockopt(socket.IPPROTO_IP, no_port, 1)
    except OSError:
        pass  # not Linux: bind() then picks the port, which works for fewer
    sock.bind((address, 0))


def accept_key(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def has_type(buf: bytes | bytearray, start: int, end: int, kind: bytes) -> bool:
    """Whether the frame in ``buf[start:end]`` is a message of type ``kind``."""
    # A substring search is far cheaper than parsing JSON for every frame; servers
    # may or may not put a space after the colon.
    return (
        buf.find(b'"type":"' + kind + b'"', start, end) >= 0
        or buf.find(b'"type": "' + kind + b'"', start, end) >= 0
    )


class Tally:
    """Counts the updates of the measurement under way, across all connections.

    Each measurement's saves carry a marker in their title (``"run<id> ``), so
    an update left over from an earlier measurement (a server that lags) is
    counted as stale, never as a delivery of this one. ``first``/``last`` are
    receive times; with ``parse_titles`` the first and last receive time of
    each save's sequence number is kept too.
    """

    def __init__(self) -> None:
        self.start(None, False)

    def start(self, marker: bytes | None, parse_titles: bool) -> None:
        self.marker = marker
        self.parse_titles = parse_titles
        self.count = 0
        self.stale = 0
        self.first: float | None = None
        self.last: float | None = None
        self.by_seq: dict[int, list] = {}

    def hits(self, count: int, now: float) -> None:
        """``count`` updates received at ``now``, titles not parsed."""
        self.count += count
        if self.first is None:
            self.first = now
        self.last = now

    def hit(self, buf: bytearray, at: int, now: float) -> None:
        """An update whose title starts at ``at`` (the marker's opening quote)."""
        self.count += 1
        if self.first is None:
            self.first = now
        self.last = now
        if self.parse_titles:
            self._by_seq(buf, at + len(self.marker), now)

    def _by_seq(self, buf: bytearray, rest: int, now: float) -> None:
        # The title goes on "seq=<n> t=<time>": read <n> in place, no JSON parse.
        if buf[rest : rest + 4] != b"seq=":
            return
        seq = int(buf[rest + 4 : buf.index(b" ", rest + 4)])
        entry = self.by_seq.get(seq)
        if entry is None:
            self.by_seq[seq] = [now, now, 1]
        else:
            entry[0] = min(entry[0], now)
            entry[1] = max(entry[1], now)
            entry[2] += 1


class Connection:
    """One client: connect, handshake, subscribe to one URL, then count updates.

    Updates go to the shared ``tally``; frames parsed from one ``recv`` share
    the receive time ``now``.
    """

    def __init__(
        self,
        address: tuple[str, int],
        path: str,
        subscribe_url: str,
        headers: dict[str, str],
        tally: Tally,
        source: str | None = None,
    ) -> None:
        self.address = address
        self.path = path
        self.subscribe_url = subscribe_url
        self.headers = headers
        self.tally = tally
        self.state = CONNECTING
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if source:
            bind_source(self.sock, source)
        self.inbox = bytearray()
        self.outbox = bytearray()
        self.key = base64.b64encode(os.urandom(16))
        self.updates = 0
        self.expect = 0  # updates this measurement should bring (client.py sets it)
        self.other_frames = 0
        self.close_code: int | None = None
        self.error: str | None = None
        self.retries = 0
        self.retry_at = 0.0  # when to ask again (time.time()); 0: not waiting

    def fileno(self) -> int:
        return self.sock.fileno()

    def start(self) -> None:
        err = self.sock.connect_ex(self.address)
        if err not in (0, 115):  # 115: EINPROGRESS
            self.fail(f"connect: {os.strerror(err)}")

    def wants_write(self) -> bool:
        return self.state == CONNECTING or bool(self.outbox)

    def on_writable(self) -> None:
        if self.state == CONNECTING:
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.fail(f"connect: {os.strerror(err)}")
                return
            self.state = HANDSHAKING
            self.outbox += self._request()
        self.flush()

    def _request(self) -> bytes:
        host = f"{self.address[0]}:{self.address[1]}"
        lines = [
            f"GET {self.path} HTTP/1.1",
            f"Host: {host}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {self.key.decode()}",
            "Sec-WebSocket-Version: 13",
            *(f"{name}: {value}" for name, value in self.headers.items()),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def flush(self) -> None:
        if not self.outbox or self.state == CLOSED:
            return
        try:
            sent = self.sock.send(self.outbox)
        except BlockingIOError:
            return
        except OSError as e:
            self.fail(f"send: {e}")
            return
        del self.outbox[:sent]

    def send(self, opcode: int, payload: bytes) -> None:
        self.outbox += frame(opcode, payload)
        self.flush()

    def on_readable(self, now: float) -> None:
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as e:
            self.fail(f"recv: {e}")
            return
        if not data:
            self.fail("server closed the connection")
            return
        self.inbox += data
        if self.state == HANDSHAKING:
            self._read_handshake()
        if self.state in (SUBSCRIBING, SUBSCRIBED):
            self._read_frames(now)

    def _read_handshake(self) -> None:
        end = self.inbox.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.inbox[:end]).decode("latin-1")
        del self.inbox[: end + 4]
        status, _, rest = head.partition("\r\n")
        if " 101 " not in status + " ":
            self.fail(f"handshake refused: {status}")
            return
        if accept_key(self.key).decode() not in rest:
            self.fail("handshake: wrong Sec-WebSocket-Accept")
            return
        self.state = SUBSCRIBING
        self.subscribe()

    def subscribe(self) -> None:
        body = {"action": "subscribe", "url": self.subscribe_url}
        self.send(OP_TEXT, json.dumps(body).encode())

    def retry_if_due(self, now: float) -> bool:
        """Ask again for a subscribe answered busy or timeout, once it is time;
        whether it was asked."""
        if not self.retry_at or now < self.retry_at or self.state != SUBSCRIBING:
            return False
        self.retry_at = 0.0
        self.subscribe()
        return True

    def _refused(self, text: bytes, now: float) -> None:
        """An error answer to the subscribe: busy and timeout are asked again
        later; any other fails this connection with the gateway's words."""
        reply = json.loads(text)
        code = reply.get("code")
        if code in ("busy", "timeout") and self.retries < MAX_RETRIES:
            self.retry_at = now + RETRY_DELAY * 2**self.retries
            self.retries += 1
            return
        self.fail(f"subscribe refused: {code}: {reply.get('message')}")

    def _read_frames(self, now: float) -> None:
        buf, end = self.inbox, len(self.inbox)
        pos = 0
        if self.state == SUBSCRIBED and not self.tally.parse_titles:
            pos = self._count_text_run(buf, end, now)
        while end - pos >= 2:
            first, second = buf[pos], buf[pos + 1]
            size, start = second & 0x7F, pos + 2
            if size == 126:
                if end - pos < 4:
                    break
                size, start = int.from_bytes(buf[pos + 2 : pos + 4], "big"), pos + 4
            elif size == 127:
                if end - pos < 10:
                    break
                size, start = int.from_bytes(buf[pos + 2 : pos + 10], "big"), pos + 10
            if end - start < size:
                break
            pos = start + size
            if not first & 0x80 or second & 0x80:
                self.fail("fragmented or masked frame from the server")
                return
            opcode = first & 0x0F
            if opcode == OP_TEXT:
                self._on_text(buf, start, pos, now)
            else:
                self._on_control(opcode, bytes(buf[start:pos]))
                if self.state == CLOSED:
                    return
        del buf[:pos]

    def _count_text_run(self, buf: bytearray, end: int, now: float) -> int:
        """Count a run of whole text frames at the start of ``buf`` at once.

        In a burst a read holds dozens of frames; walking only their headers
        and counting the marker over the run in C makes the client about four
        times cheaper per frame, so a fast server is not measured at the
        client's speed. Each update holds its marker and its type once, as in
        ``_on_text``. Returns where the run ends; the frame loop takes the rest.
        """
        pos = frames_seen = 0
        while end - pos >= 4 and buf[pos] == 0x81:  # FIN, text, unmasked
            size = buf[pos + 1]
            if size < 126:
                stop = pos + 2 + size
            elif size == 126:
                stop = pos + 4 + (buf[pos + 2] << 8 | buf[pos + 3])
            else:
                break
            if stop > end:
                break
            pos = stop
            frames_seen += 1
        if not frames_seen:
            return 0
        marker = self.tally.marker
        hits = buf.count(marker, 0, pos) if marker is not None else 0
        updates = buf.count(b'"type":"update"', 0, pos)
        updates += buf.count(b'"type": "update"', 0, pos)
        stale = max(0, updates - hits)
        if hits:
            self.updates += hits
            self.tally.hits(hits, now)
        self.tally.stale += stale
        self.other_frames += frames_seen - hits - stale
        return pos

    def _on_text(self, buf: bytearray, start: int, end: int, now: float) -> None:
        marker = self.tally.marker
        at = buf.find(marker, start, end) if marker is not None else -1
        if at >= 0:
            self.updates += 1
            self.tally.hit(buf, at, now)
        elif has_type(buf, start, end, b"update"):
            self.tally.stale += 1
        elif self.state == SUBSCRIBING and buf.find(b'"subscribed"', start, end) >= 0:
            self.state = SUBSCRIBED
        elif self.state == SUBSCRIBING and has_type(buf, start, end, b"error"):
            self._refused(bytes(buf[start:end]), now)
        else:
            self.other_frames += 1

    def _on_control(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_PING:
            self.send(OP_PONG, payload)
        elif opcode == OP_CLOSE:
            self.close_code = int.from_bytes(payload[:2], "big") if payload else 1005
            self.fail(f"closed by the server with {self.close_code}")

    def fail(self, reason: str) -> None:
        if self.state != CLOSED:
            self.error = reason
            self.state = CLOSED
            self.sock.close()

    def close(self) -> None:
        """Say goodbye (close code 1000) and drop the socket."""
        if self.state == CLOSED:
            return
        if self.state in (SUBSCRIBING, SUBSCRIBED):
            try:
                self.sock.send(frame(OP_CLOSE, (1000).to_bytes(2, "big")))
            except OSError:
                pass  # the server is gone already; nothing to say goodbye to
        self.state = CLOSED
        self.sock.close()
