"""WebSocket clients for the gateway tests: a polite one and a raw-socket one.

``Client`` wraps websocket-client and speaks JSON. ``RawClient`` does the
handshake by hand and sends hand-built frames, for protocol abuse tests.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import time
from typing import Any

import redis
import websocket

from pushy.messages import Update


def login(user: Any) -> tuple[Any, str]:
    """A logged-in browser (a Django test client, for logging out later) and
    its session cookie."""
    from django.conf import settings
    from django.test import Client as DjangoClient

    browser = DjangoClient()
    browser.force_login(user)
    name = settings.SESSION_COOKIE_NAME
    return browser, f"{name}={browser.cookies[name].value}"


def session_cookie(user: Any) -> str:
    """The ``Cookie`` header of ``user`` logged in."""
    return login(user)[1]


class Client:
    """A well-behaved client: JSON in, JSON out."""

    def __init__(self, ws_url: str, timeout: float = 5, **options: Any) -> None:
        # websocket-client checks UTF-8 in pure Python (slow for big frames);
        # str decoding still fails on invalid UTF-8.
        options.setdefault("skip_utf8_validation", True)
        self.ws = websocket.create_connection(ws_url, timeout=timeout, **options)

    def send(self, **message: Any) -> None:
        self.ws.send(json.dumps(message))

    def recv(self) -> dict:
        return json.loads(self.ws.recv())

    def request(self, **message: Any) -> dict:
        self.send(**message)
        return self.recv()

    def subscribe(self, url: str) -> dict:
        answer = self.request(action="subscribe", url=url)
        assert answer == {"type": "subscribed", "url": url}, answer
        return answer

    def recv_until(self, predicate: Any, timeout: float = 5) -> dict:
        """The first message for which ``predicate`` is true (others are skipped)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.recv()
            if predicate(message):
                return message
        raise AssertionError("no matching message in time")

    def close(self) -> None:
        self.ws.close()


def publish(redis_url: str, update: Update) -> int:
    """PUBLISH an update as pushy's publisher would; how many gateways got it."""
    client = redis.Redis.from_url(redis_url)
    try:
        return client.publish(update.channel, update.encode())
    finally:
        client.close()


def shot_update(pk: int, event: str = "update", **data: Any) -> Update:
    return Update(
        url=f"/api/shot/{pk}/",
        event=event,
        model="testapp.shot",
        pk=pk,
        collection="/api/shot/",
        data=data or None,
    )


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    masked: bool = True,
    rsv: int = 0,
    length: int | None = None,
) -> bytes:
    """A client frame built by hand; ``length`` may lie about the payload size."""
    size = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    mask_bit = 0x80 if masked else 0
    if size < 126:
        head += bytes([mask_bit | size])
    elif size < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", size)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


def handshake_request(path: str = "/ws", **headers: str) -> bytes:
    fields = {
        "Host": "127.0.0.1",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Version": "13",
    }
    fields.update({k.replace("_", "-"): v for k, v in headers.items()})
    method = fields.pop("Method", "GET")
    lines = [f"{method} {path} HTTP/1.1"]
    lines += [f"{k}: {v}" for k, v in fields.items() if v is not None]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class RawClient:
    """A TCP socket that did the upgrade by hand and speaks in frames."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float = 5,
        rcvbuf: int | None = None,
        source: str | None = None,
    ) -> None:
        """``source``: the local address to connect from (any of 127.0.0.0/8 works)."""
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source:
            self.sock.bind((source, 0))
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.buffer = b""

    def upgrade(self, **headers: str) -> str:
        """Send the handshake; the response head (status line and headers)."""
        self.sock.sendall(handshake_request(**headers))
        head = self._read_until(b"\r\n\r\n")
        return head.decode("latin-1")

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed before {marker!r}: {self.buffer!r}")
            self.buffer += chunk
        head, self.buffer = self.buffer.split(marker, 1)
        return head

    def _read(self, size: int) -> bytes:
        while len(self.buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_frame(self) -> tuple[int, bytes]:
        """The next server frame as (opcode, payload); servers never mask."""
        first, second = self._read(2)
        assert not second & 0x80, "server frames must not be masked"
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", self._read(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", self._read(8))
        return first & 0x0F, self._read(size)

    def recv_close(self, answer: bool = True) -> tuple[int | None, str]:
        """Skip frames until a close frame: its (code, reason); answers it."""
        while True:
            opcode, payload = self.recv_frame()
            if opcode == 0x8:
                break
        if answer:
            try:
                self.send(frame(0x8, payload[:2]))
            except OSError:
                pass  # The server may have closed already (after a protocol error).
        if not payload:
            return None, ""
        return struct.unpack("!H", payload[:2])[0], payload[2:].decode()

    def send_json(self, **message: Any) -> None:
        self.send(frame(0x1, json.dumps(message).encode()))

    def recv_json(self) -> dict:
        while True:
            opcode, payload = self.recv_frame()
            if opcode == 0x1:
                return json.loads(payload)

    def at_eof(self, timeout: float = 5) -> bool:
        """Whether the server closed the TCP connection within ``timeout``."""
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
        return True

    def close(self) -> None:
        self.sock.close()
