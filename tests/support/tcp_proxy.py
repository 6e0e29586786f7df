"""A TCP proxy for tests that can become a black hole, as a silent partition does.

    with TcpProxy(redis_server.port) as proxy:
        gateway = Gateway(proxy.redis_url())
        proxy.blackhole()   # connections stay open, bytes are accepted, nothing moves
        proxy.heal()        # forwarding resumes

Threads, not gevent: the test process is not monkey-patched. Each accepted
connection gets its own upstream connection and two pump threads. While black-
holed, the pumps stop reading, so what either side sends waits in the kernel's
buffers and nothing is answered, yet no socket is closed (unlike a stopped
server, which the other side notices at once). New connections are still
accepted. When either side closes, both are closed. ``stop()`` closes everything.
"""

from __future__ import annotations

import select
import socket
import threading

# How often an idle pump looks at the stop flag.
TICK = 0.05


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``upstream_host``:``upstream_port``."""

    def __init__(
        self, upstream_port: int, upstream_host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(64)
        self.listener.settimeout(TICK)
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self._forwarding = threading.Event()
        self._forwarding.set()
        # Held while a chunk moves, so blackhole() returns only once nothing is
        # in flight: after it, not one more byte gets through.
        self._moving = threading.Lock()
        self._stopping = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._spawn(self._accept_loop)

    def redis_url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def blackhole(self) -> None:
        """Stop forwarding in both directions; every socket stays open."""
        with self._moving:
            self._forwarding.clear()

    def heal(self) -> None:
        """Forward again, what waited in the buffers first."""
        self._forwarding.set()

    def stop(self) -> None:
        self._stopping.set()
        self._forwarding.set()
        self.listener.close()
        for sock in list(self._sockets):
            _close(sock)
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed by stop()
            self.accepted += 1
            try:
                upstream = socket.create_connection(self.upstream, timeout=2)
            except OSError:
                _close(client)  # as the upstream server would: refused
                continue
            for sock in (client, upstream):
                sock.settimeout(None)
                self._sockets.add(sock)
            self._spawn(self._pump, client, upstream)
            self._spawn(self._pump, upstream, client)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while not self._stopping.is_set():
                if not self._forwarding.wait(TICK):
                    continue
                readable, _, _ = select.select([source], [], [], TICK)
                if readable and not self._move(source, sink):
                    return
        except (OSError, ValueError):
            pass  # a socket closed under us: the pair is done
        finally:
            for sock in (source, sink):
                _close(sock)
                self._sockets.discard(sock)

    def _move(self, source: socket.socket, sink: socket.socket) -> bool:
        """Forward one chunk; False at end of stream."""
        with self._moving:
            if not self._forwarding.is_set():
                return True  # black-holed since select(): leave it in the buffer
            chunk = source.recv(65536)
            if not chunk:
                return False
            sink.sendall(chunk)
            return True


def _close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass
