"""RFC 6455 framing: pushy's own, small, strict reader and frame builders.

Why not gevent-websocket's framing: it reads a frame's whole payload before any
size check, unmasks byte by byte in Python, accepts unmasked client frames and
mangles close codes (see docs/decisions.md). This module checks a frame's length
from its header before reading the payload, unmasks with one big-integer XOR,
validates UTF-8 in C (``bytes.decode``), and raises ``ProtocolError`` carrying
the close code the RFC asks for.
"""

from __future__ import annotations

import json
import struct

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
DATA_OPCODES = (OP_TEXT, OP_BINARY)
CONTROL_OPCODES = (OP_CLOSE, OP_PING, OP_PONG)

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNSUPPORTED = 1003
CLOSE_INVALID_DATA = 1007
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TOO_SLOW = 4008

# Codes a peer may send (RFC 6455 7.4.1 and the IANA registry); 1005, 1006 and
# 1015 are reserved for reporting and never appear on the wire.
_SENDABLE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011})
_MAX_CONTROL_PAYLOAD = 125
# The most frames one message may come in. Fragments cost the gateway per frame
# (parsing, a rate-limit token each), not per byte, so a message of endless
# empty fragments would otherwise be free to send and never end; past it the
# client is closed with 1009, as for a message over MAX_MESSAGE_BYTES. Browsers
# never fragment what they send; a client that does, in pieces of 64 bytes or
# more, stays below it at the default MAX_MESSAGE_BYTES.
MAX_FRAGMENTS = 1024


class ProtocolError(Exception):
    """Raised when a client breaks RFC 6455; ``code`` is the close code to send."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR ``payload`` with the repeating 4-byte ``mask``, as one integer operation."""
    size = len(payload)
    if not size:
        return payload
    key = (mask * (size // 4 + 1))[:size]
    value = int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")
    return value.to_bytes(size, "little")


def build_frame(opcode: int, payload: bytes) -> bytes:
    """One final, unmasked (server-to-client) frame."""
    size = len(payload)
    first = 0x80 | opcode
    if size < 126:
        header = struct.pack("!BB", first, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", first, 126, size)
    else:
        header = struct.pack("!BBQ", first, 127, size)
    return header + payload


def text_frame(text: bytes) -> bytes:
    """A text frame for UTF-8 ``text`` (already encoded: encode once, send many)."""
    return build_frame(OP_TEXT, text)


def close_frame(code: int | None = CLOSE_NORMAL, reason: str = "") -> bytes:
    """A close frame; ``code=None`` sends an empty one (answering an empty close)."""
    if code is None:
        return build_frame(OP_CLOSE, b"")
    body = struct.pack("!H", code) + reason.encode()[: _MAX_CONTROL_PAYLOAD - 2]
    return build_frame(OP_CLOSE, body)


def parse_close(payload: bytes) -> tuple[int | None, str]:
    """The (code, reason) of a client's close frame; ProtocolError when invalid."""
    if not payload:
        return None, ""
    if len(payload) == 1:
        raise ProtocolError(CLOSE_PROTOCOL_ERROR, "close frame of one byte")
    (code,) = struct.unpack("!H", payload[:2])
    if code not in _SENDABLE_CODES and not 3000 <= code <= 4999:
        raise ProtocolError(CLOSE_PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(CLOSE_INVALID_DATA, "close reason is not UTF-8") from None
    return code, reason


class FrameParser:
    """Client messages from bytes as they arrive, enforcing the limits.

    The connection feeds what each ``recv`` returned and takes complete
    messages with ``next_message()``; nothing waits. ``max_message`` bounds a
    whole message: the fragments of one message are counted together, and a
    frame whose header announces more is refused as soon as its header is in,
    before any of its payload is kept. A fragmented message is reassembled in
    one bytearray, so what it holds is its payload bytes, whatever the number
    of fragments (never a list entry per fragment), and it may have at most
    ``MAX_FRAGMENTS`` of them. An idle parser holds no bytes.

    ``extra_frames`` counts the continuation frames parsed since the owner last
    took it: a message of n frames is one message and n - 1 extra frames, which
    the connection charges to its rate limit (every frame costs a token).
    """

    __slots__ = (
        "max_message", "extra_frames", "_buffer", "_pos", "_opcode", "_message",
        "_pending", "_fragments",
    )  # fmt: skip

    def __init__(self, max_message: int) -> None:
        self.max_message = max_message
        self.extra_frames = 0
        self._buffer = b""
        self._pos = 0  # where the next frame starts in _buffer
        # The message being reassembled: a control frame may come between fragments.
        self._opcode: int | None = None
        self._message = bytearray()
        self._pending = 0  # len(self._message), kept for the check of each header
        self._fragments = 0

    def feed(self, data: bytes) -> None:
        """Add received bytes (copied: the caller may reuse its buffer)."""
        if self._pos:
            self._buffer = self._buffer[self._pos :]
            self._pos = 0
        self._buffer = self._buffer + data if self._buffer else bytes(data)

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as a message."""
        return len(self._buffer) - self._pos + self._pending

    def next_message(self) -> tuple[int, bytes] | None:
        """The next complete message or control frame as (opcode, payload), or
        None until more bytes arrive. Text payloads are returned still encoded,
        but checked to be UTF-8; ProtocolError when the client broke RFC 6455.
        """
        while True:
            frame = self._next_frame()
            if frame is None:
                return None
            fin, opcode, payload = frame
            if opcode in CONTROL_OPCODES:
                return opcode, payload
            if (opcode == OP_CONTINUATION) != (self._opcode is not None):
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "bad fragmentation")
            if fin and self._opcode is None:
                return opcode, _checked(opcode, payload)  # the common case
            if self._opcode is None:
                self._opcode = opcode
            else:
                self.extra_frames += 1
            self._fragments += 1
            if self._fragments > MAX_FRAGMENTS:
                raise ProtocolError(CLOSE_TOO_BIG, "too many fragments")
            self._message += payload
            self._pending += len(payload)
            if fin:
                opcode, message = self._opcode, bytes(self._message)
                self._opcode, self._message = None, bytearray()
                self._pending = self._fragments = 0
                return opcode, _checked(opcode, message)

    def _next_frame(self) -> tuple[bool, int, bytes] | None:
        """One frame as (fin, opcode, unmasked payload), or None if incomplete."""
        buffer, pos = self._buffer, self._pos
        available = len(buffer) - pos
        if available < 2:
            return None
        head, second = buffer[pos], buffer[pos + 1]
        fin, opcode, size = bool(head & 0x80), head & 0x0F, second & 0x7F
        if head & 0x70:
            raise ProtocolError(CLOSE_PROTOCOL_ERROR, "reserved bits set")
        if opcode not in DATA_OPCODES + CONTROL_OPCODES + (OP_CONTINUATION,):
            raise ProtocolError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode}")
        if not second & 0x80:
            raise ProtocolError(CLOSE_PROTOCOL_ERROR, "client frame not masked")
        if opcode in CONTROL_OPCODES and (not fin or size > _MAX_CONTROL_PAYLOAD):
            raise ProtocolError(CLOSE_PROTOCOL_ERROR, "bad control frame")
        header = 2
        if size == 126:
            if available < 4:
                return None
            (size,) = struct.unpack_from("!H", buffer, pos + 2)
            header = 4
        elif size == 127:
            if available < 10:
                return None
            (size,) = struct.unpack_from("!Q", buffer, pos + 2)
            header = 10
        if opcode not in CONTROL_OPCODES and self._pending + size > self.max_message:
            raise ProtocolError(CLOSE_TOO_BIG, "message too big")
        start = pos + header + 4
        if len(buffer) < start + size:
            return None
        mask = buffer[start - 4 : start]
        self._pos = start + size
        if self._pos == len(buffer):
            self._buffer, self._pos = b"", 0
        return fin, opcode, unmask(buffer[start : start + size], mask)


def _checked(opcode: int, message: bytes) -> bytes:
    if opcode == OP_TEXT:
        _check_utf8(message)
    return message


def _check_utf8(data: bytes) -> None:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(CLOSE_INVALID_DATA, "text is not UTF-8") from None


def message_frame(message: dict) -> bytes:
    """One JSON message to a client, as a complete text frame."""
    return text_frame(json.dumps(message, separators=(",", ":")).encode())
