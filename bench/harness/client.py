"""The load client: one process holding many WebSocket connections to one server.

Run by the harness as ``python -m bench.harness.client --ws ws://127.0.0.1:PORT/ws
--url /api/item/1/ --conns N`` (``--url`` given more than once: connection i
subscribes to the i-th, round robin; bench.cluster's mix). It talks to the
harness over stdin/stdout in JSON lines:

- it opens N connections (a bounded number of handshakes at a time, so the
  server's listen backlog never overflows) and prints ``{"event": "ready", ...}``;
- on ``{"cmd": "measure", "marker": "\"run7 ", "expect": M, "idle": S,
  "deadline": D, "drain": L, "titles": bool}`` it counts the updates whose
  title carries the marker until every connection has M of them (M may be a
  mapping of subscribed URL to count: a connection expects its URL's), or none came
  for S seconds, or D seconds passed; waits (at most L s) until the server
  stops sending; then prints ``{"event": "report", ...}``;
- on ``{"cmd": "quit"}`` (or end of input) it closes everything and exits.

Pings from the server are answered at all times, so heartbeats never close a
connection that the benchmark holds idle.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import sys
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

from bench.harness.procs import raise_open_files
from bench.harness.wsclient import CLOSED, SUBSCRIBED, Connection, Tally

# Handshakes in flight at once: under the smallest listen backlog here
# (Twisted's 50, for daphne), so no SYN is dropped and retried a second later.
MAX_PENDING = 32


def cpu_now() -> float:
    times = os.times()
    return times.user + times.system


class LoadClient:
    def __init__(
        self,
        ws_url: str,
        sub_urls: list[str],
        conns: int,
        headers: dict,
        cookies: list[str] | None = None,
        source: str | None = None,
    ) -> None:
        parts = urlsplit(ws_url)
        self.address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.path = parts.path or "/"
        self.sub_urls = sub_urls
        self.wanted = conns
        self.headers = headers
        # Connection i sends cookies[i % len(cookies)]: many users, one process.
        self.cookies = cookies or []
        # The local address to connect from (bench.scale spreads its clients
        # over several, past one address's ephemeral ports); None: the kernel's.
        self.source = source
        self.selector = selectors.DefaultSelector()
        self.conns: list[Connection] = []
        self.tally = Tally()
        self.stdin_buf = b""
        # The longest time between two polls: a process starved of CPU for
        # longer than the server's pong wait sees its connections closed.
        self.last_poll: float | None = None
        self.max_gap = 0.0

    # -- event loop -----------------------------------------------------------

    def _register(self, conn: Connection) -> None:
        events = selectors.EVENT_READ
        if conn.wants_write():
            events |= selectors.EVENT_WRITE
        self.selector.register(conn.sock, events, conn)

    def _update_interest(self, conn: Connection, key: selectors.SelectorKey) -> None:
        if conn.state == CLOSED:
            self.selector.unregister(key.fileobj)
            return
        events = selectors.EVENT_READ
        if conn.wants_write():
            events |= selectors.EVENT_WRITE
        if events != key.events:
            self.selector.modify(key.fileobj, events, conn)

    def poll(self, timeout: float) -> list[str]:
        """Serve sockets for up to ``timeout`` s; the lines stdin gave meanwhile."""
        lines: list[str] = []
        now = time.monotonic()
        if self.last_poll is not None:
            self.max_gap = max(self.max_gap, now - self.last_poll)
        self.last_poll = now
        for key, mask in self.selector.select(timeout):
            conn = key.data
            if conn is None:
                lines.extend(self._read_stdin())
                continue
            if mask & selectors.EVENT_READ:
                conn.on_readable(time.time())
            if mask & selectors.EVENT_WRITE and conn.state != CLOSED:
                conn.on_writable()
            # The common case, a subscribed reader with nothing to send, needs no
            # change of interest: skip the bookkeeping.
            if (
                conn.outbox
                or key.events != selectors.EVENT_READ
                or conn.state == CLOSED
            ):
                self._update_interest(conn, key)
        return lines

    def _read_stdin(self) -> Iterator[str]:
        chunk = os.read(sys.stdin.fileno(), 65536)
        if not chunk:
            yield json.dumps({"cmd": "quit"})
            return
        self.stdin_buf += chunk
        *complete, self.stdin_buf = self.stdin_buf.split(b"\n")
        yield from (line.decode() for line in complete if line.strip())

    # -- phases -----------------------------------------------------------------

    def connect_all(self, deadline: float) -> dict:
        started = time.monotonic()
        cpu = cpu_now()
        pending: list[Connection] = []
        while time.monotonic() < deadline:
            pending = [c for c in pending if c.state not in (SUBSCRIBED, CLOSED)]
            now = time.time()
            for conn in pending:
                if conn.retry_if_due(now) and conn.outbox:
                    self._update_interest(conn, self.selector.get_key(conn.sock))
            while len(pending) < MAX_PENDING and len(self.conns) < self.wanted:
                headers = self.headers
                if self.cookies:
                    cookie = self.cookies[len(self.conns) % len(self.cookies)]
                    headers = {**headers, "Cookie": cookie}
                conn = Connection(
                    self.address,
                    self.path,
                    self.sub_urls[len(self.conns) % len(self.sub_urls)],
                    headers,
                    self.tally,
                    self.source,
                )
                self.conns.append(conn)
                conn.start()
                if conn.state != CLOSED:
                    self._register(conn)
                    pending.append(conn)
            if not pending and len(self.conns) >= self.wanted:
                break
            self.poll(0.05)
        subscribed = sum(c.state == SUBSCRIBED for c in self.conns)
        errors = sorted({c.error for c in self.conns if c.error})[:5]
        return {
            "event": "ready",
            "subscribed": subscribed,
            "failed": len(self.conns) - subscribed,
            "errors": errors,
            "seconds": round(time.monotonic() - started, 3),
            "client_cpu": cpu_now() - cpu,
            "max_gap_s": round(self.max_gap, 3),
        }

    def measure(self, command: dict) -> dict:
        """Count the updates that carry ``command["marker"]``; see the module doc."""
        expect, idle = command["expect"], command["idle"]
        self.tally.start(command["marker"].encode(), command["titles"])
        for conn in self.conns:
            conn.updates = 0
            per_url = isinstance(expect, dict)
            conn.expect = expect.get(conn.subscribe_url, 0) if per_url else expect
        live = [c for c in self.conns if c.state == SUBSCRIBED]
        goal = sum(c.expect for c in live)
        cpu = cpu_now()
        stop_at = time.monotonic() + command["deadline"]
        quiet_since, seen = time.monotonic(), 0
        while self.tally.count < goal and time.monotonic() < stop_at:
            self.poll(0.1)
            if self.tally.count != seen:
                seen, quiet_since = self.tally.count, time.monotonic()
            elif seen and time.monotonic() - quiet_since > idle:
                break
        report = self._report(goal, live, cpu_now() - cpu)
        # Complete: anything more would be a duplicate, a short wait shows it.
        quiet = 0.2 if self.tally.count >= goal else idle
        report["late"] = self.drain(quiet, command["drain"])
        return report

    def drain(self, quiet: float, limit: float) -> int:
        """Wait until no update came for ``quiet`` s (at most ``limit`` s).

        A server that lags keeps sending after a measurement gave up; the next
        one must not start while it does. The late updates are counted.
        """
        before = self.tally.count + self.tally.stale
        stop_at = time.monotonic() + limit
        quiet_since, seen = time.monotonic(), before
        while time.monotonic() < stop_at and time.monotonic() - quiet_since < quiet:
            self.poll(0.1)
            now_seen = self.tally.count + self.tally.stale
            if now_seen != seen:
                seen, quiet_since = now_seen, time.monotonic()
        self.tally.marker = None
        return seen - before

    def _report(self, goal: int, live: list[Connection], cpu: float) -> dict:
        short = [c for c in live if c.updates < c.expect]
        return {
            "event": "report",
            "connections": len(live),
            "delivered": self.tally.count,
            "expected": goal,
            "short_connections": len(short),
            "extra": sum(max(0, c.updates - c.expect) for c in live),
            "closed": sum(c.state == CLOSED for c in live),
            "close_codes": sorted({c.close_code for c in live if c.close_code})[:5],
            "errors": sorted({c.error for c in live if c.error})[:5],
            "first": self.tally.first,
            "last": self.tally.last,
            "by_seq": self.tally.by_seq,
            "stale": self.tally.stale,
            "client_cpu": cpu,
            "max_gap_s": round(self.max_gap, 3),
        }

    def close_all(self) -> None:
        for conn in self.conns:
            conn.close()
        self.selector.close()


def emit(message: dict) -> None:
    # Management-command style output: the harness reads these lines.
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def serve(client: LoadClient, connect_timeout: float) -> None:
    client.selector.register(sys.stdin, selectors.EVENT_READ, None)
    emit(client.connect_all(time.monotonic() + connect_timeout))
    while True:
        for line in client.poll(1.0):
            cmd = json.loads(line)
            if cmd["cmd"] == "quit":
                client.close_all()
                emit({"event": "bye"})
                return
            if cmd["cmd"] == "measure":
                emit({"event": "measuring"})
                emit(client.measure(cmd))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ws", required=True, help="ws://host:port/path")
    parser.add_argument(
        "--url", action="append", required=True, help="the URL(s) to subscribe to"
    )
    parser.add_argument("--conns", type=int, required=True)
    parser.add_argument("--header", action="append", default=[], help="Name: value")
    parser.add_argument(
        "--cookie", action="append", default=[], help="Cookie values, round robin"
    )
    parser.add_argument("--connect-timeout", type=float, default=120)
    parser.add_argument("--source", help="local address to connect from")
    args = parser.parse_args(argv)
    raise_open_files(args.conns + 100)
    headers = dict(h.split(": ", 1) for h in args.header)
    client = LoadClient(
        args.ws, args.url, args.conns, headers, args.cookie, args.source
    )
    serve(client, args.connect_timeout)


if __name__ == "__main__":
    main()
