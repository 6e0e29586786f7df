"""``make demo``'s script: it starts Redis (if none answers), the site and the
gateway, shows a live page, and stops all of it on Ctrl-C."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.support.servers import free_port, stop_process, wait_for_output

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(120)]


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def demo():
    """demo.py on free ports, with no Redis where it looks first."""
    site_port, gateway_port = free_port(), free_port()
    workdir = tempfile.mkdtemp(prefix="pushy-demo-")
    env = dict(
        os.environ,
        PUSHY_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        PUSHY_DEMO_DB=os.path.join(workdir, "demo.sqlite3"),
        PYTHONUNBUFFERED="1",
    )
    proc = subprocess.Popen(
        [sys.executable, "sample_site/demo.py", "--port", str(site_port),
         "--gateway-port", str(gateway_port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        startup = wait_for_output(proc, "Ctrl-C stops everything", timeout=90)
        # Keep reading, so chatty servers never block on a full pipe.
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        yield proc, startup, site_port, gateway_port
    finally:
        stop_process(proc, timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)


def test_demo_serves_a_live_page_and_stops_everything_on_ctrl_c(demo, page):
    proc, startup, site_port, gateway_port = demo
    redis_port = int(re.search(r"private one at redis://[^:]+:(\d+)", startup)[1])
    assert f"open http://127.0.0.1:{site_port}/" in startup
    assert "user demo, password pushy-demo" in startup

    page.goto(f"http://127.0.0.1:{site_port}/")
    expect(page.locator("#pushy-status")).to_have_attribute("data-state", "open")
    expect(page.locator("#shot-1 .title")).to_have_text("Fog over the cranes")

    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 0
    for port in (site_port, gateway_port, redis_port):
        assert not listening(port), f"port {port} still served after Ctrl-C"
