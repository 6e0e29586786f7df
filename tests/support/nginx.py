"""Run a real nginx with the configuration docs/deployment.md documents.

The ``nginx`` block of the deployment guide is taken as it is; only its
addresses change: the gateways' and the site's ports, and the port nginx
listens on. So the tests prove the configuration users copy.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.servers import free_port, stop_process

ROOT = Path(__file__).resolve().parent.parent.parent
GUIDE = ROOT / "docs" / "deployment.md"

_MAIN = """\
{user}
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 4096; }}
http {{
    # When each request ended, its status, and every gateway nginx tried for it.
    log_format upstreams '$msec $status "$upstream_addr" "$upstream_status" '
                         '$request_time $request_uri';
    access_log {dir}/access.log upstreams;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
{server}
}}
"""


def documented_config(section: str | None = None) -> str:
    """The (first) ``nginx`` code block of docs/deployment.md, or of one section.

    ``section`` is a ``## `` heading's title: the block is looked for from that
    heading to the next one of the same level.
    """
    text = GUIDE.read_text()
    if section is not None:
        match = re.search(
            rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text, re.M | re.S
        )
        if match is None:
            raise AssertionError(f"docs/deployment.md has no section {section!r}")
        text = match.group(1)
    match = re.search(r"```nginx\n(.*?)```", text, re.S)
    if match is None:
        raise AssertionError("docs/deployment.md has no ```nginx block there")
    return match.group(1)


def render(
    gateway_ports: list[int],
    site_port: int,
    listen_port: int,
    config: str | None = None,
) -> str:
    """The documented server configuration, pointed at these ports.

    ``config`` replaces the documented block (an experiment with another one).
    """
    text = documented_config() if config is None else config
    gateway_line = re.compile(r"^(\s*)server 127\.0\.0\.1:800[1-9]( [^;]*)?;\n", re.M)
    first = gateway_line.search(text)
    if first is None:
        raise AssertionError("the documented upstream lists no gateway")
    indent, options = first.group(1), first.group(2) or ""
    lines = "".join(f"{indent}server 127.0.0.1:{p}{options};\n" for p in gateway_ports)
    text = gateway_line.sub("", text)
    text = text[: first.start()] + lines + text[first.start() :]
    text = text.replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{site_port};")
    return text.replace("listen 80;", f"listen 127.0.0.1:{listen_port};")


class Nginx:
    """nginx in the foreground, in a private prefix directory, stopped by pid."""

    def __init__(
        self,
        gateway_ports: list[int],
        site_port: int,
        port: int | None = None,
        config: str | None = None,
    ) -> None:
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="pushy-nginx-")
        self.config = Path(self.dir, "nginx.conf")
        self.config.write_text(
            _MAIN.format(
                # As root, nginx's workers would otherwise run as nobody, who may
                # not enter the private temp directory.
                user="user root;" if os.geteuid() == 0 else "",
                dir=self.dir,
                server=render(gateway_ports, site_port, self.port, config),
            )
        )
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, timeout: float = 10) -> Nginx:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self.proc = subprocess.Popen(
            [
                binary,
                "-p",
                self.dir,
                "-c",
                str(self.config),
                "-e",
                f"{self.dir}/error.log",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._wait_listening(timeout)
        return self

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited:\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)  # nginx says nothing when it is ready: poll the port
        raise TimeoutError(f"nginx did not listen within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        path = Path(self.dir, "error.log")
        return path.read_text() if path.exists() else ""

    def access_log(self) -> str:
        """One line per finished request: the ``upstreams`` format above."""
        path = Path(self.dir, "access.log")
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
