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
from collections.abc import Callable

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
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


def accept_key(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def is_update(payload: bytes) -> bool:
    # A substring test is far cheaper than parsing JSON for every frame; servers
    # may or may not put a space after the colon.
    return b'"type":"update"' in payload or b'"type": "update"' in payload


class Connection:
    """One client: connect, handshake, subscribe to one URL, then count updates.

    ``on_update(conn, payload, now)`` is called for each update frame; frames
    parsed from one ``recv`` share the receive time ``now``.
    """

    def __init__(
        self,
        address: tuple[str, int],
        path: str,
        subscribe_url: str,
        headers: dict[str, str],
        on_update: Callable[[Connection, bytes, float], None],
    ) -> None:
        self.address = address
        self.path = path
        self.subscribe_url = subscribe_url
        self.headers = headers
        self.on_update = on_update
        self.state = CONNECTING
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.inbox = bytearray()
        self.outbox = bytearray()
        self.key = base64.b64encode(os.urandom(16))
        self.updates = 0
        self.other_frames = 0
        self.close_code: int | None = None
        self.error: str | None = None

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
            data = self.sock.recv(262144)
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
        body = {"action": "subscribe", "url": self.subscribe_url}
        self.send(OP_TEXT, json.dumps(body).encode())

    def _read_frames(self, now: float) -> None:
        buf, pos, end = self.inbox, 0, len(self.inbox)
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
            payload = bytes(buf[start : start + size])
            pos = start + size
            if not first & 0x80 or second & 0x80:
                self.fail("fragmented or masked frame from the server")
                return
            self._on_frame(first & 0x0F, payload, now)
            if self.state == CLOSED:
                return
        del buf[:pos]

    def _on_frame(self, opcode: int, payload: bytes, now: float) -> None:
        if opcode == OP_TEXT:
            if is_update(payload):
                self.updates += 1
                self.on_update(self, payload, now)
            elif self.state == SUBSCRIBING and b'"subscribed"' in payload:
                self.state = SUBSCRIBED
            else:
                self.other_frames += 1
        elif opcode == OP_PING:
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
