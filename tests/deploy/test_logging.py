"""The gateway logs through the site's LOGGING: docs/deployment.md, "Where the
logs go".

A gateway started with that section's LOGGING (the "pushy" logger to a file,
here in a temporary directory) writes its start-up line there and not to its
stdout (runpushy adds a stderr handler only when LOGGING has none for "pushy").
"""

from __future__ import annotations

import re
import subprocess
import threading
import time

import pytest

from tests.gateway.clients import Client
from tests.support.gateway import READY_MARKER, ROOT, Gateway
from tests.support.nginx import GUIDE
from tests.support.servers import free_port

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


def file_logging(path: str) -> dict:
    """The LOGGING of the guide's section, its file at ``path``."""
    section = re.search(
        r"^## Where the logs go\n(.*?)(?=^## )", GUIDE.read_text(), re.M | re.S
    )
    assert section, "docs/deployment.md has no section 'Where the logs go'"
    block = re.search(r"```python\n(.*?)```", section.group(1), re.S)
    assert block, "no ```python block in 'Where the logs go'"
    namespace: dict = {}
    exec(block.group(1), namespace)
    logging = namespace["LOGGING"]
    logging["handlers"]["pushy_file"]["filename"] = path
    return logging


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
