"""Start ``manage.py pushy_capture`` as a real subprocess, for tests and benchmarks.

    with CaptureProcess(redis_url) as capture:   # waits until it is active
        ...

Like ``Gateway``: its output is read all along (``output()``), waits are for
log lines with a deadline, and it is stopped (or killed) by pid.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from tests.support.servers import stop_process

ACTIVE = "pushy capture active"
STANDING_BY = "pushy capture standing by"


class CaptureProcess:
    def __init__(self, redis_url: str, env: dict[str, str] | None = None) -> None:
        self.redis_url = redis_url
        self.extra_env = env or {}
        self.proc: subprocess.Popen | None = None
        self._lines: list[str] = []
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def start(self, wait_for: str | None = ACTIVE, timeout: float = 30):
        from tests.conftest import ROOT, subprocess_env

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "django", "pushy_capture"],
            env=subprocess_env(self.redis_url, **self.extra_env),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        if wait_for:
            try:
                self.wait_for_log(wait_for, timeout)
            except Exception:
                self.stop()
                raise
        return self

    def _drain(self) -> None:
        try:
            for line in self.proc.stdout:
                self._lines.append(line)
        except (ValueError, OSError):
            pass

    def output(self) -> str:
        return "".join(self._lines)

    def wait_for_log(self, text: str, timeout: float = 30, count: int = 1) -> str:
        """Poll (with a deadline) until ``text`` was logged ``count`` times."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.output().count(text) >= count:
                return self.output()
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.02)
        raise TimeoutError(f"pushy_capture never logged {text!r}:\n{self.output()}")

    @property
    def active(self) -> bool:
        return ACTIVE in self.output()

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 15) -> int | None:
        if self.proc is None:
            return None
        stop_process(self.proc, timeout, close_streams=False)
        if self._reader is not None:
            self._reader.join(timeout)
        stop_process(self.proc)
        return self.proc.returncode

    def __enter__(self) -> CaptureProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
