"""The demo site (sample_site), served for real by ``runserver`` in a subprocess.

Its database is a throwaway SQLite file, migrated and seeded from the demo
fixture; the site, the gateway and the ``manage.py`` runs of a test share it
and the test's Redis through environment variables that sample_site.settings
reads.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.servers import free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]
MANAGE = ROOT / "sample_site" / "manage.py"


class SampleSite:
    """The demo site on a free port, talking to a gateway at ``socket_server``."""

    def __init__(self, redis_url: str, socket_server: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pushy-site-"))
        self.port = free_port()
        self.env = {
            "DJANGO_SETTINGS_MODULE": "sample_site.settings",
            "PUSHY_DEMO_DB": str(self.dir / "db.sqlite3"),
            "PUSHY_REDIS_URL": redis_url,
            "PUSHY_SOCKET_SERVER": socket_server,
            "PYTHONUNBUFFERED": "1",
        }
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def environ(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def manage(self, *args: str, timeout: float = 60) -> str:
        """Run ``sample_site/manage.py <args>``; its output (raises on failure)."""
        done = subprocess.run(
            [sys.executable, str(MANAGE), *args],
            env=self.environ(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode:
            raise RuntimeError(f"manage.py {args[0]} failed:\n{done.stderr}")
        return done.stdout

    def shell(self, code: str) -> str:
        """Run Python in a fresh Django process of the site: a save 'elsewhere'."""
        return self.manage("shell", "-c", code)

    def start(self, timeout: float = 30) -> SampleSite:
        self.manage("migrate", "--no-input", "-v", "0")
        self.manage("loaddata", "demo", "-v", "0")
        self.log = open(self.dir / "runserver.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, str(MANAGE), "runserver", "--noreload",
             f"127.0.0.1:{self.port}"],
            env=self.environ(),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        self._wait_until_serving(timeout)
        return self

    def _wait_until_serving(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"runserver exited:\n{self.output()}")
            try:
                with urllib.request.urlopen(self.url + "api/v1/", timeout=2):
                    return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.05)
        raise TimeoutError(f"the site did not answer in {timeout}s:\n{self.output()}")

    def output(self) -> str:
        return (self.dir / "runserver.log").read_text()

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
