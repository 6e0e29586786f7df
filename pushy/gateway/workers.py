"""``runpushy --workers N``: N gateway processes on one port, supervised.

The supervisor (the ``runpushy`` process itself, never monkey-patched) opens
the listening sockets and keeps them open for its whole life; each worker is a
fresh gateway interpreter that inherits one of them. Where the OS has
SO_REUSEPORT, every worker gets its own socket bound to the same port, so the
kernel spreads new connections evenly; elsewhere, and for Unix sockets, all
workers share one socket. Because the sockets outlive the workers, a worker
that dies is replaced without the port ever refusing a connection: what
arrives meanwhile waits in the backlog. SIGTERM or SIGINT is passed on to every
worker, which closes its clients with 1001; stragglers are killed after
``SHUTDOWN_TIMEOUT`` plus a margin.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable

from pushy.gateway import sockets

logger = logging.getLogger(__name__)

# A worker that dies sooner than this after it started is crashing on start-up:
# wait before the next try, doubling up to MAX_RESTART_DELAY.
STABLE_AFTER = 5.0
MAX_RESTART_DELAY = 5.0
# Seconds past SHUTDOWN_TIMEOUT before stragglers are killed.
KILL_MARGIN = 5.0


def listening_sockets(
    host: str | None, port: int, unix_path: str | None, count: int
) -> list[socket.socket]:
    """Sockets for ``count`` workers: one each (SO_REUSEPORT), else one shared."""
    if unix_path or not sockets.supports_reuse_port():
        shared = sockets.listen(host, port, unix_path)
        shared.set_inheritable(True)
        return [shared]
    opened = []
    for _ in range(count):
        sock = sockets.listen_tcp(host, port, reuse_port=True)
        # Later sockets must bind the port the first got (port 0 picks one).
        port = sock.getsockname()[1]
        sock.set_inheritable(True)
        opened.append(sock)
    return opened


class Worker:
    """One slot: the socket it serves and the process serving it now."""

    def __init__(self, number: int, sock: socket.socket) -> None:
        self.number = number
        self.sock = sock
        self.proc: subprocess.Popen | None = None
        self.started = 0.0
        self.restart_delay = 0.0


class Supervisor:
    """Starts the workers, replaces any that dies, stops them all on a signal.

    ``command(fd, number)`` gives the argv of worker ``number`` serving the
    listening socket ``fd``.
    """

    def __init__(
        self,
        command: Callable[[int, int], list[str]],
        env: dict[str, str],
        sockets: list[socket.socket],
        count: int,
        shutdown_timeout: float,
    ) -> None:
        self.command = command
        self.env = env
        self.workers = [Worker(n, sockets[n % len(sockets)]) for n in range(count)]
        self.shutdown_timeout = shutdown_timeout
        self.stopping = False

    def run(self) -> int:
        """Supervise until a signal stops every worker; the exit status."""
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGALRM, self._on_kill_deadline)
        for worker in self.workers:
            self._start(worker)
        logger.info(
            "pushy supervisor (pid %d) runs %d gateway workers: %s",
            os.getpid(),
            len(self.workers),
            ", ".join(str(w.proc.pid) for w in self.workers),
        )
        while self._running():
            self._reap_one()
        logger.info("pushy supervisor: all workers stopped")
        return 0

    def _running(self) -> bool:
        return any(w.proc is not None for w in self.workers)

    def _start(self, worker: Worker) -> None:
        fd = worker.sock.fileno()
        worker.proc = subprocess.Popen(
            self.command(fd, worker.number), env=self.env, pass_fds=[fd]
        )
        worker.started = time.monotonic()

    def _reap_one(self) -> None:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            for worker in self.workers:
                worker.proc = None
            return
        worker = next((w for w in self.workers if w.proc and w.proc.pid == pid), None)
        if worker is None:
            return
        worker.proc.returncode = os.waitstatus_to_exitcode(status)
        code, worker.proc = worker.proc.returncode, None
        if self.stopping:
            return
        self._replace(worker, pid, code)

    def _replace(self, worker: Worker, pid: int, code: int) -> None:
        lived = time.monotonic() - worker.started
        if lived < STABLE_AFTER:
            worker.restart_delay = min(
                max(worker.restart_delay * 2, 0.5), MAX_RESTART_DELAY
            )
        else:
            worker.restart_delay = 0.0
        logger.error(
            "pushy gateway worker %d (pid %d) exited with status %d after %.1fs; "
            "starting a new one%s",
            worker.number,
            pid,
            code,
            lived,
            f" in {worker.restart_delay:.1f}s" if worker.restart_delay else "",
        )
        if worker.restart_delay:
            # Only the supervisor waits here; the other workers keep serving.
            time.sleep(worker.restart_delay)
        if not self.stopping:
            self._start(worker)

    def _on_stop_signal(self, signum: int, frame: object) -> None:
        if self.stopping:
            return
        self.stopping = True
        logger.info(
            "pushy supervisor: %s, stopping %d workers",
            signal.Signals(signum).name,
            len(self.workers),
        )
        for worker in self.workers:
            if worker.proc is not None:
                worker.proc.send_signal(signal.SIGTERM)
        signal.alarm(int(self.shutdown_timeout + KILL_MARGIN))

    def _on_kill_deadline(self, signum: int, frame: object) -> None:
        for worker in self.workers:
            if worker.proc is not None:
                logger.error("pushy supervisor: killing worker pid %d", worker.proc.pid)
                worker.proc.kill()
