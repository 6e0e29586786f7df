"""The load client: one process holding many WebSocket connections to one server.

Run by the harness as ``python -m bench.client --ws ws://127.0.0.1:PORT/ws
--url /api/item/1/ --conns N``. It talks to the harness over stdin/stdout in
JSON lines:

- it opens N connections (a bounded number of handshakes at a time, so the
  server's listen backlog never overflows) and prints ``{"event": "ready", ...}``;
- on ``{"cmd": "measure", "expect": M, "idle": S, "deadline": D}`` it counts
  updates until every connection has M of them, or none came for S seconds,
  or D seconds passed, then prints ``{"event": "report", ...}``;
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

from bench.procs import raise_open_files
from bench.wsclient import CLOSED, SUBSCRIBED, Connection

# Handshakes in flight at once: well under a listen backlog of 128.
MAX_PENDING = 64
# The title of a latency update: "seq=<n> t=<unix time before save()>".
TITLE_KEY = b'"title"'


def cpu_now() -> float:
    times = os.times()
    return times.user + times.system


class Tally:
    """Receive times per update: the first and last delivery of each sequence."""

    def __init__(self, parse_titles: bool) -> None:
        self.parse_titles = parse_titles
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.first: float | None = None
        self.last: float | None = None
        self.by_seq: dict[int, list[float]] = {}

    def on_update(self, conn: Connection, payload: bytes, now: float) -> None:
        self.count += 1
        if self.first is None:
            self.first = now
        self.last = now
        if self.parse_titles:
            self._by_seq(payload, now)

    def _by_seq(self, payload: bytes, now: float) -> None:
        title = json.loads(payload).get("data", {}).get("title", "")
        if not title.startswith("seq="):
            return
        seq = int(title.split()[0][4:])
        entry = self.by_seq.get(seq)
        if entry is None:
            self.by_seq[seq] = [now, now, 1]
        else:
            entry[1] = now
            entry[2] += 1


class LoadClient:
    def __init__(self, ws_url: str, sub_url: str, conns: int, headers: dict) -> None:
        parts = urlsplit(ws_url)
        self.address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.path = parts.path or "/"
        self.sub_url = sub_url
        self.wanted = conns
        self.headers = headers
        self.selector = selectors.DefaultSelector()
        self.conns: list[Connection] = []
        self.tally = Tally(parse_titles=False)
        self.stdin_buf = b""

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
        for key, mask in self.selector.select(timeout):
            conn = key.data
            if conn is None:
                lines.extend(self._read_stdin())
                continue
            if mask & selectors.EVENT_READ:
                conn.on_readable(time.time())
            if mask & selectors.EVENT_WRITE and conn.state != CLOSED:
                conn.on_writable()
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
            while len(pending) < MAX_PENDING and len(self.conns) < self.wanted:
                conn = Connection(
                    self.address,
                    self.path,
                    self.sub_url,
                    self.headers,
                    self.tally.on_update,
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
        }

    def measure(self, expect: int, idle: float, deadline: float, titles: bool) -> dict:
        self.tally.reset()
        self.tally.parse_titles = titles
        for conn in self.conns:
            conn.updates = 0
        live = [c for c in self.conns if c.state == SUBSCRIBED]
        goal = expect * len(live)
        cpu = cpu_now()
        stop_at = time.monotonic() + deadline
        quiet_since = time.monotonic()
        seen = 0
        while self.tally.count < goal and time.monotonic() < stop_at:
            self.poll(0.1)
            if self.tally.count != seen:
                seen, quiet_since = self.tally.count, time.monotonic()
            elif seen and time.monotonic() - quiet_since > idle:
                break
            elif not seen and time.monotonic() - quiet_since > deadline:
                break
        return self._report(expect, live, cpu_now() - cpu)

    def _report(self, expect: int, live: list[Connection], cpu: float) -> dict:
        short = [c for c in live if c.updates < expect]
        return {
            "event": "report",
            "connections": len(live),
            "delivered": self.tally.count,
            "expected": expect * len(live),
            "short_connections": len(short),
            "extra": sum(max(0, c.updates - expect) for c in live),
            "closed": sum(c.state == CLOSED for c in live),
            "close_codes": sorted({c.close_code for c in live if c.close_code})[:5],
            "errors": sorted({c.error for c in live if c.error})[:5],
            "first": self.tally.first,
            "last": self.tally.last,
            "by_seq": self.tally.by_seq,
            "client_cpu": cpu,
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
                emit(
                    client.measure(
                        cmd["expect"], cmd["idle"], cmd["deadline"], cmd["titles"]
                    )
                )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ws", required=True, help="ws://host:port/path")
    parser.add_argument("--url", required=True, help="the URL to subscribe to")
    parser.add_argument("--conns", type=int, required=True)
    parser.add_argument("--header", action="append", default=[], help="Name: value")
    parser.add_argument("--connect-timeout", type=float, default=120)
    args = parser.parse_args(argv)
    raise_open_files(args.conns + 100)
    headers = dict(h.split(": ", 1) for h in args.header)
    client = LoadClient(args.ws, args.url, args.conns, headers)
    serve(client, args.connect_timeout)


if __name__ == "__main__":
    main()
