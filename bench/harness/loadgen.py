"""The harness's side of the load client: start its processes, command them, collect.

One measurement spans several client processes (each holds at most
``per_process`` connections), so their reports are merged here.
"""

from __future__ import annotations

import json
import math
import os
import select
import subprocess
import sys
import tempfile
import time

from bench.harness.servers import Context
from tests.support.servers import stop_process

SUBSCRIBE_URL = "/api/item/"
# Seconds a client waits, after a measurement, for a lagging server to go quiet.
DRAIN_LIMIT = 30


class LineReader:
    """JSON lines from a child's stdout, read from the raw fd with a timeout.

    Python's buffered readline may hold a second line where select() cannot see
    it, so the bytes are buffered here instead.
    """

    def __init__(self, proc: subprocess.Popen, log_path: str) -> None:
        self.proc = proc
        self.log_path = log_path
        self.fd = proc.stdout.fileno()
        self.buf = b""

    def read(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"load client {self.proc.pid}: no answer in {timeout}s"
                )
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                chunk = os.read(self.fd, 1 << 20)
                if not chunk:
                    with open(self.log_path) as log:
                        tail = log.read()[-3000:]
                    raise RuntimeError(f"load client {self.proc.pid} exited:\n{tail}")
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)


class Clients:
    """N connections to one server, spread over as many processes as needed."""

    def __init__(
        self,
        ctx: Context,
        ws_url: str,
        conns: int,
        headers: dict,
        per_process: int,
        cookies: list[str] | None = None,
        sources: list[str] | None = None,
        connect_timeout: float | None = None,
        urls: list[str] | None = None,
    ) -> None:
        count = max(1, math.ceil(conns / per_process))
        shares = [conns // count + (i < conns % count) for i in range(count)]
        self.conns = conns
        # Process i connects from sources[i % len(sources)] (bench.scale).
        extra = [
            ["--source", sources[i % len(sources)]] if sources else []
            for i in range(count)
        ]
        if connect_timeout:
            extra = [[*e, "--connect-timeout", str(connect_timeout)] for e in extra]
        # Connection j of each process subscribes to urls[j % len(urls)].
        extra = [[*e, *(a for u in urls or [] for a in ("--url", u))] for e in extra]
        spawned = [
            self._spawn(ctx, ws_url, share, headers, cookies or [], extra[i])
            for i, share in enumerate(shares)
        ]
        self.shares = shares
        self.procs = [proc for proc, _ in spawned]
        self.readers = [LineReader(proc, log) for proc, log in spawned]

    @staticmethod
    def _spawn(
        ctx: Context,
        ws_url: str,
        conns: int,
        headers: dict,
        cookies: list[str],
        extra: list[str],
    ) -> tuple[subprocess.Popen, str]:
        args = [sys.executable, "-m", "bench.harness.client", "--ws", ws_url, *extra]
        if "--url" not in extra:
            args += ["--url", SUBSCRIBE_URL]
        args += ["--conns", str(conns)]
        for name, value in headers.items():
            args += ["--header", f"{name}: {value}"]
        for cookie in cookies:
            args += ["--cookie", cookie]
        log = tempfile.NamedTemporaryFile(
            "w", dir=ctx.workdir, prefix="client-", suffix=".log", delete=False
        )
        with log:
            proc = subprocess.Popen(
                args,
                cwd=ctx.root,
                env=ctx.env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        return proc, log.name

    def _send(self, command: dict) -> None:
        for proc in self.procs:
            proc.stdin.write(json.dumps(command).encode() + b"\n")
            proc.stdin.flush()

    def wait_ready(self, timeout: float = 180) -> dict:
        """Once every connection subscribed (or failed): counts, time, client CPU."""
        reports = [reader.read(timeout) for reader in self.readers]
        return {
            "subscribed": sum(r["subscribed"] for r in reports),
            "failed": sum(r["failed"] for r in reports),
            "errors": sorted({e for r in reports for e in r["errors"]})[:5],
            "seconds": max(r["seconds"] for r in reports),
            "client_cpu": sum(r["client_cpu"] for r in reports),
            "max_gap_s": max(r.get("max_gap_s", 0) for r in reports),
        }

    def start_measuring(
        self,
        run: int,
        expect: int | dict[str, int],
        deadline: float,
        titles: bool,
        plan_idle: float,
    ) -> None:
        """Count the updates of save run ``run`` (``expect`` per connection, or
        per subscribed URL); returns once every process counts."""
        self.deadline = deadline + DRAIN_LIMIT
        command = {"cmd": "measure", "marker": f'"run{run} ', "expect": expect}
        command.update(idle=plan_idle, deadline=deadline, drain=DRAIN_LIMIT)
        self._send({**command, "titles": titles})
        for reader in self.readers:
            assert reader.read(30)["event"] == "measuring"

    def collect(self) -> dict:
        """The merged report of the measurement under way."""
        reports = [reader.read(self.deadline + 30) for reader in self.readers]
        return merge(reports)

    def quit(self) -> None:
        try:
            self._send({"cmd": "quit"})
        except OSError:
            pass  # already gone; stop_process reaps it
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
            stop_process(proc)


def merge(reports: list[dict]) -> dict:
    by_seq: dict[int, list[float]] = {}
    for report in reports:
        for seq, (first, last, count) in report["by_seq"].items():
            entry = by_seq.setdefault(int(seq), [first, last, 0])
            entry[0], entry[1] = min(entry[0], first), max(entry[1], last)
            entry[2] += count
    firsts = [r["first"] for r in reports if r["first"] is not None]
    lasts = [r["last"] for r in reports if r["last"] is not None]
    return {
        "connections": sum(r["connections"] for r in reports),
        "delivered": sum(r["delivered"] for r in reports),
        "expected": sum(r["expected"] for r in reports),
        "short_connections": sum(r["short_connections"] for r in reports),
        "extra": sum(r["extra"] for r in reports),
        "closed": sum(r["closed"] for r in reports),
        "close_codes": sorted({c for r in reports for c in r["close_codes"]}),
        "errors": sorted({e for r in reports for e in r["errors"]})[:5],
        "first": min(firsts) if firsts else None,
        "last": max(lasts) if lasts else None,
        "by_seq": by_seq,
        "client_cpu": sum(r["client_cpu"] for r in reports),
        "max_gap_s": max(r.get("max_gap_s", 0) for r in reports),
        "stale": sum(r["stale"] for r in reports),
        "late": sum(r["late"] for r in reports),
    }
