"""Start and stop the servers under test, each on a free port (bench/peers says how).

Every server is ready when its port accepts connections and its Redis pattern
subscription is live (one more Redis client holds a pattern subscription per
server process), so no update
published after ``start()`` returns can be missed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from bench.harness.procs import cpu_seconds, rss_bytes
from tests.support.servers import free_port, stop_process

# How a server is started: its processes, listening on the given port.
Starter = Callable[["Context", int], list[subprocess.Popen]]


@dataclass
class Context:
    """What every process of one benchmark run shares."""

    root: str
    workdir: str
    env: dict[str, str]
    redis_url: str
    redis_pid: int | None = None

    def env_for(self, settings: str) -> dict[str, str]:
        return {**self.env, "DJANGO_SETTINGS_MODULE": settings}

    def run_json(self, module: str, *args: str, timeout: float) -> dict:
        """Run ``python -m module args`` to its end; the JSON of its last line."""
        done = subprocess.run(
            [sys.executable, "-m", module, *args],
            cwd=self.root,
            env=self.env_for("bench.site.settings"),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode:
            raise RuntimeError(f"{module} {args} failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])


@dataclass
class Running:
    name: str
    port: int
    procs: list[subprocess.Popen] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    profilers: list[subprocess.Popen] = field(default_factory=list)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def cpu(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.procs)

    def rss(self) -> int:
        return sum(rss_bytes(p.pid) for p in self.procs)

    def check_alive(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {proc.returncode}:\n{self.log_tail()}"
                )

    def log_tail(self, chars: int = 3000) -> str:
        text = ""
        for path in self.logs:
            with open(path, errors="replace") as f:
                text += f.read()[-chars:]
        return text

    def diagnose(self, timeout: float = 3.0) -> str:
        """pushy's gateways write every thread's stack on SIGUSR1: ask them,
        wait (with a deadline) for it in their log, and return the log's end."""
        if self.name == "pushy":
            for proc in self.procs:
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGUSR1)
            # Each thread's stack ends "(most recent call first)" lines; the
            # dump is whole once the log stops growing.
            deadline = time.monotonic() + timeout
            seen = ""
            while time.monotonic() < deadline:
                now = self.log_tail(20000)
                if "most recent call first" in now and now == seen:
                    break
                seen = now
                time.sleep(0.1)  # a poll of the log, with a deadline
        return self.log_tail(8000)

    def profile(self, path: str) -> None:
        """Sample the server with py-spy into ``path``.* (collapsed stacks)."""
        args = [
            shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"),
            "record",
            "--format",
            "raw",
            "--rate",
            "250",
            "--subprocesses",
        ]
        for proc in self.procs:
            out = f"{path}.{proc.pid}.txt"
            self.profilers.append(
                subprocess.Popen(
                    [*args, "--output", out, "--pid", str(proc.pid)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

    def stop(self) -> None:
        for profiler in self.profilers:
            # SIGINT makes py-spy write what it sampled and exit.
            profiler.send_signal(signal.SIGINT)
            profiler.wait(30)
        for proc in reversed(self.procs):
            stop_process(proc)


def spawn(
    ctx: Context, args: list[str], settings: str, name: str = ""
) -> subprocess.Popen:
    # Output goes to a file, not a pipe nobody drains: a chatty server must
    # never block on a full pipe in the middle of a measurement.
    log = tempfile.NamedTemporaryFile(
        "w",
        dir=ctx.workdir,
        prefix=(name or args[2]).replace(".", "-") + "-",
        suffix=".log",
        delete=False,
    )
    with log:
        proc = subprocess.Popen(
            args,
            cwd=ctx.root,
            env=ctx.env_for(settings),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    proc.log_path = log.name
    return proc


def _pattern_subscribers(redis_url: str) -> int:
    """Redis clients holding a pattern subscription (NUMPAT counts patterns only)."""
    client = redis.Redis.from_url(redis_url)
    try:
        return sum(int(c.get("psub", 0)) > 0 for c in client.client_list("pubsub"))
    finally:
        client.close()


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait_ready(
    server: Running, ctx: Context, before: int, timeout: float, patterns: int = 1
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server.check_alive()
        live = _pattern_subscribers(ctx.redis_url)
        if _accepts(server.port) and live >= before + patterns:
            return
        time.sleep(0.05)  # polling a port and a counter: there is no event to await
    server.stop()
    raise TimeoutError(f"{server.name} not ready within {timeout}s")


def start(
    name: str,
    ctx: Context,
    timeout: float = 30,
    starter: Starter | None = None,
    patterns: int = 1,
) -> Running:
    """Start server ``name`` (as its registry entry says, or ``starter``); wait.

    Ready: its port accepts and ``patterns`` more pattern subscriptions are
    live in Redis (one per gateway process: ``runpushy --workers N`` makes N).
    """
    before = _pattern_subscribers(ctx.redis_url)
    port = free_port()
    if starter is None:
        # Imported here: the registry's starters are built on this module.
        from bench.peers.registry import peer

        starter = peer(name).start
    procs = starter(ctx, port)
    server = Running(name, port, procs, [p.log_path for p in procs])
    _wait_ready(server, ctx, before, timeout, patterns)
    return server
