"""A fake socket and event loop, for in-process tests of connections.

A ``Connection`` (and its ``Writer``) touch the outside world only through
its socket and ``Shared.loop``: these stand-ins let a test decide what the
kernel takes, when the socket turns readable or writable, when a timer runs
out, and when the loop's callbacks run, with no process, no real socket and
no waiting. uvicorn's protocol tests do the same with a mock transport.
"""

from __future__ import annotations

from typing import Any

from pushy.gateway import frames
from pushy.gateway.shared import Limits, Shared
from pushy.gateway.stats import Stats

LIMITS = Limits(
    max_message=65536,
    max_subscriptions=10,
    max_subscription_bytes=65536,
    queue_size=4,
    queue_bytes=1 << 20,
    write_timeout=5.0,
    handshake_timeout=5.0,
    shutdown_timeout=5.0,
    ping_interval=30.0,
    rate=1000.0,
    burst=100,
)


class FakeSocket:
    """A non-blocking socket whose kernel takes ``room`` more bytes.

    ``sent`` is what the client could read; ``incoming`` what it sent that
    the gateway has not read yet; ``unsent`` what the kernel would say it
    still holds for the client (SIOCOUTQ, read by the stall rule).
    """

    def __init__(self, room: int = 1 << 30) -> None:
        self.room = room
        self.sent = bytearray()
        self.writes: list[bytes | memoryview] = []  # what each send() was given
        self.incoming = bytearray()
        self.unsent = 0
        self.error: OSError | None = None  # raised by the next send
        self.eof = False  # the client closed its end
        self.closed = False

    def send(self, data: bytes | memoryview) -> int:
        if self.closed:
            raise OSError(9, "closed")
        if self.error is not None:
            raise self.error
        self.writes.append(data)
        if self.room <= 0:
            raise BlockingIOError
        taken = min(len(data), self.room)
        self.sent += bytes(data[:taken])
        self.room -= taken
        return taken

    def recv_into(self, buffer: bytearray, size: int) -> int:
        if not self.incoming:
            if self.eof:
                return 0
            raise BlockingIOError
        taken = min(size, len(self.incoming))
        buffer[:taken] = self.incoming[:taken]
        del self.incoming[:taken]
        return taken

    def recv(self, size: int, flags: int = 0) -> bytes:
        if not self.incoming:
            if self.eof:
                return b""
            raise BlockingIOError
        return bytes(self.incoming[:size])  # only MSG_PEEK is used

    def fileno(self) -> int:
        return -1 if self.closed else 99

    def close(self) -> None:
        self.closed = True

    def frames(self) -> list[tuple[int, bytes]]:
        """The (opcode, payload) of each whole frame the client could read."""
        found, data = [], bytes(self.sent)
        while len(data) >= 2:
            length, start = data[1] & 0x7F, 2
            if length == 126:
                length, start = int.from_bytes(data[2:4], "big"), 4
            elif length == 127:
                length, start = int.from_bytes(data[2:10], "big"), 10
            if len(data) < start + length:
                break
            found.append((data[0] & 0x0F, data[start : start + length]))
            data = data[start + length :]
        return found

    def close_codes(self) -> list[int | None]:
        """The codes of the close frames the client could read."""
        return [
            frames.parse_close(payload)[0]
            for opcode, payload in self.frames()
            if opcode == frames.OP_CLOSE
        ]


class _Callback:
    def __init__(self, function: Any, args: tuple) -> None:
        self.function, self.args, self.pending = function, args, True

    def stop(self) -> None:
        self.pending = False


class FakeWatcher:
    """An io watcher or a timer: ``fire()`` runs its callback if it is active."""

    def __init__(self, kind: str, *params: Any) -> None:
        self.kind, self.params = kind, params
        self.callback: Any = None
        self.args: tuple = ()
        self.active = False
        self.closed = False

    def start(self, callback: Any, *args: Any) -> None:
        self.callback, self.args, self.active = callback, args, True

    again = start  # a repeating timer, restarted whole

    def stop(self) -> None:
        self.active = False

    def close(self) -> None:
        self.active, self.closed = False, True

    def fire(self) -> None:
        assert self.active, f"the {self.kind} watcher is not active"
        self.callback(*self.args)


class FakeLoop:
    """The event loop's calls a connection makes; ``run()`` runs the callbacks."""

    def __init__(self) -> None:
        self.callbacks: list[_Callback] = []
        self.watchers: list[FakeWatcher] = []

    def run_callback(self, function: Any, *args: Any) -> _Callback:
        callback = _Callback(function, args)
        self.callbacks.append(callback)
        return callback

    def io(self, fd: int, events: int) -> FakeWatcher:
        watcher = FakeWatcher("write" if events == 2 else "read", fd)
        self.watchers.append(watcher)
        return watcher

    def timer(self, after: float, repeat: float = 0.0) -> FakeWatcher:
        watcher = FakeWatcher("timer", after, repeat)
        self.watchers.append(watcher)
        return watcher

    def run(self) -> int:
        """Run the callbacks scheduled (and those they schedule); how many ran."""
        ran = 0
        while self.callbacks:
            callback = self.callbacks.pop(0)
            if callback.pending:
                callback.pending = False
                callback.function(*callback.args)
                ran += 1
        return ran

    def active(self, kind: str) -> list[FakeWatcher]:
        return [w for w in self.watchers if w.kind == kind and w.active]


def fake_shared(limits: Limits = LIMITS) -> Shared:
    """The Shared object of one gateway, on a fake loop, with fresh Stats."""
    return Shared(limits, Stats(), FakeLoop())


def client_frame(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    """A frame as a client sends it: masked (a zero mask), up to 125 bytes."""
    assert len(payload) <= 125
    return (
        bytes([(0x80 if fin else 0) | opcode, 0x80 | len(payload)]) + bytes(4) + payload
    )
