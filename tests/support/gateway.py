"""Start ``manage.py runpushy`` as a real subprocess, for tests and benchmarks.

    with Gateway(redis_url) as gw:
        ws = websocket.create_connection(gw.ws_url)

``Gateway`` waits for the gateway's start-up log line (an event, not a sleep),
keeps reading its output afterwards (so a chatty gateway never blocks on a full
pipe; ``output()`` returns what it logged), and stops it by pid. Per-gateway
settings go in ``pushy_settings`` (merged into PUSHY_SETTINGS) and ``settings``
(other Django settings): they are written to a throwaway settings module that
star-imports tests.settings.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import free_port, stop_process, wait_for_output

ROOT = Path(__file__).resolve().parent.parent.parent
READY_MARKER = "pushy gateway serving"

_SETTINGS_TEMPLATE = """\
import json
from tests.settings import *  # noqa: F403

PUSHY_SETTINGS = {{**PUSHY_SETTINGS, **json.loads({pushy!r})}}  # noqa: F405
globals().update(json.loads({django!r}))
"""


class Gateway:
    """A ``runpushy`` subprocess on a free port (or a Unix socket)."""

    def __init__(
        self,
        redis_url: str,
        *,
        pushy_settings: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        unix_socket: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.redis_url = redis_url
        self.host = host
        self.port = port or free_port()
        self.unix_socket = unix_socket
        self.pushy_settings = pushy_settings or {}
        self.settings = settings or {}
        self.extra_env = env or {}
        self.proc: subprocess.Popen | None = None
        self.startup_output = ""
        self._lines: list[str] = []
        self._reader: threading.Thread | None = None
        self._dir: str | None = None

    @property
    def url(self) -> str:
        """The gateway's HTTP base URL, ending in '/'."""
        return f"http://{self.host}:{self.port}/"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def _env(self) -> dict[str, str]:
        from tests.conftest import subprocess_env

        extra = dict(self.extra_env)
        if self.pushy_settings or self.settings:
            self._dir = tempfile.mkdtemp(prefix="pushy-gw-settings-")
            module = f"pushy_gw_settings_{os.getpid()}_{self.port}"
            text = _SETTINGS_TEMPLATE.format(
                pushy=json.dumps(self.pushy_settings), django=json.dumps(self.settings)
            )
            Path(self._dir, module + ".py").write_text(text)
            extra["DJANGO_SETTINGS_MODULE"] = module
            extra["PYTHONPATH"] = os.pathsep.join([self._dir, str(ROOT)])
        return subprocess_env(self.redis_url, **extra)

    def command(self) -> list[str]:
        args = [sys.executable, "-m", "django", "runpushy", "--host", self.host]
        args += ["--port", str(self.port)]
        if self.unix_socket:
            args += ["--unix", self.unix_socket]
        return args

    def start(self, timeout: float = 30) -> Gateway:
        self.proc = subprocess.Popen(
            self.command(),
            env=self._env(),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            self.startup_output = wait_for_output(self.proc, READY_MARKER, timeout)
        except Exception:
            self.stop()
            raise
        self._lines = self.startup_output.splitlines(keepends=True)
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        return self

    def _drain(self) -> None:
        stream = self.proc.stdout
        try:
            for line in stream:
                self._lines.append(line)
        except (ValueError, OSError):
            pass  # The stream was closed by stop().

    def output(self) -> str:
        """Everything the gateway has printed so far."""
        return "".join(self._lines)

    def wait_for_log(self, text: str, timeout: float = 10) -> str:
        """Poll (with a deadline) until the gateway has logged ``text``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return self.output()
            time.sleep(0.02)
        raise TimeoutError(f"gateway never logged {text!r}:\n{self.output()}")

    def wait_for_health(self, status: int, timeout: float) -> float:
        """Poll ``/health`` (with a deadline) until it answers ``status``; seconds."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.get("/health", timeout=2)[0] == status:
                return time.monotonic() - start
            time.sleep(0.05)
        raise AssertionError(f"/health never answered {status} within {timeout}s")

    def get(self, path: str, timeout: float = 5) -> tuple[int, str]:
        """GET ``path`` from the gateway: (status, body), 4xx and 5xx included."""
        try:
            with urllib.request.urlopen(
                self.url + path.lstrip("/"), timeout=timeout
            ) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def get_json(self, path: str) -> Any:
        status, body = self.get(path)
        return json.loads(body)

    def signal(self, signum: int = signal.SIGTERM) -> None:
        os.kill(self.pid, signum)

    def wait(self, timeout: float = 15) -> int:
        """Wait for the process to exit; its return code."""
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM (then SIGKILL if it lingers) by pid; the return code."""
        if self.proc is None:
            return None
        proc = self.proc
        stop_process(proc, timeout, close_streams=False)
        if self._reader is not None:
            self._reader.join(timeout)
        stop_process(proc)
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
        return proc.returncode

    def __enter__(self) -> Gateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def gateway(request, pushy_redis):
    """A running gateway on this test's Redis and DB; stopped after the test.

    One per test: the database is emptied between tests and its ids reused,
    which a gateway's cached decisions (rightly, within the TTL) would not
    know. A ``gateway_settings`` mark gives it PUSHY_SETTINGS of its own:
    ``pytestmark = pytest.mark.gateway_settings(DB_POOL_SIZE=2)``.
    """
    mark = request.node.get_closest_marker("gateway_settings")
    with Gateway(pushy_redis.url, pushy_settings=mark and mark.kwargs) as running:
        yield running


@pytest.fixture
def start_gateway(pushy_redis, closing):
    """``start_gateway(**pushy_settings)``: a running gateway on this test's
    Redis and DB, with those settings; stopped when the test ends."""

    def start(**pushy_settings: Any) -> Gateway:
        return closing(Gateway(pushy_redis.url, pushy_settings=pushy_settings))

    return start
