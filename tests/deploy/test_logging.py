"""The gateway logs through the site's LOGGING: docs/deployment.md, "Where the
logs go".

A gateway started with a LOGGING setting that sends the "pushy" logger to a
file writes its start-up line there, and nothing of pushy's to its stdout
(runpushy adds its own stderr handler only when LOGGING has none for "pushy").
"""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

from tests.gateway.clients import Client
from tests.support.gateway import READY_MARKER, ROOT, Gateway
from tests.support.servers import free_port

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


def file_logging(path: str) -> dict:
    """The guide's file example, pointed at ``path``."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}
        },
        "handlers": {
            "pushy_file": {
                "class": "logging.handlers.WatchedFileHandler",
                "filename": path,
                "formatter": "plain",
            }
        },
        "loggers": {
            "pushy": {"handlers": ["pushy_file"], "level": "INFO", "propagate": False}
        },
    }


class QuietGateway(Gateway):
    """A gateway whose start is seen in its log file, not on its stdout."""

    def __init__(self, redis_url: str, log_path, **kwargs) -> None:
        super().__init__(redis_url, **kwargs)
        self.log_path = log_path

    def start(self, timeout: float = 30) -> QuietGateway:
        self.proc = subprocess.Popen(
            self.command(),
            env=self._env(),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while READY_MARKER not in self.file_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                output = self.output()
                self.stop()
                raise AssertionError(f"no start-up line in the log file:\n{output}")
            time.sleep(0.05)  # a file has no event to wait on: poll it
        return self

    def file_text(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


def test_logging_setting_sends_the_gateways_lines_to_a_file(pushy_redis, tmp_path):
    log_path = tmp_path / "pushy.log"
    port = free_port()
    gateway = QuietGateway(
        pushy_redis.url,
        log_path,
        port=port,
        settings={"LOGGING": file_logging(str(log_path))},
    )
    with gateway:
        client = Client(gateway.ws_url)
        client.request(action="subscribe", url="/api/shot/")
        client.close()
        text = gateway.file_text()
        line = (
            f"INFO pushy.gateway.server pushy gateway serving http://127.0.0.1:{port}/"
        )
        assert line in text
        assert "pushy gateway serving" not in gateway.output()
    # SIGTERM: the shutdown line goes to the same file.
    assert "SIGTERM: closing" in gateway.file_text()
