"""Measure presence (issue 25): many members on one URL, joins and leaves.

    python -m bench.presence                      # 10,000 members, 50 changes/s
    python -m bench.presence --members 1000 --seconds 10

Two ``runpushy`` processes (``tests/support/gateway.py``, ``AUTHORIZE``
allowing all: authorization is not what is measured) share one private Redis.
``--members`` watchers, on gateway A, subscribe to one URL, then join it;
churners on gateway B join and leave it at ``--rate`` changes a second. Prints
one JSON object:

- ``rss_per_member_bytes``: gateway A's RSS growth from the joins of its
  subscribed watchers, per member (what presence adds to a subscription);
- ``cpu_per_change_ms``: CPU of each gateway while the churn runs (less its idle
  CPU over as long), per change; ``frames_out_per_change`` on A;
- ``reach_seconds``: for single joins and leaves made on B with nothing else
  going on, the time from the send until every watcher on A had the new count
  (min, median, max over ``--probes``): Redis, the notice, A's pacing (at most
  ``presence.PACE``), its fan-out to every member and this process reading it.

Anonymous watchers and churners: each is a person of its own, never named, so
the lists carry counts only (named people would make each frame longer; the
work per change is the same). The watchers share this process's one loop, so
on a small machine the reach includes its reading 10,000 sockets.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import selectors
import socket
import statistics
import struct
import sys
import time

import django

from bench.harness.procs import cpu_seconds, raise_open_files, rss_bytes
from bench.harness.wsclient import frame

URL = "/presence/bench/"
OPEN = {
    "AUTHORIZE": "pushy.authorization.allow_all",
    "MAX_CONNECTIONS": 15000,
    "MAX_CONNECTIONS_PER_CLIENT": None,
}
COUNT = re.compile(rb'"count":(\d+)')


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    django.setup()


class Socket:
    """A client connection, handshaken blocking, then read without blocking."""

    def __init__(self, port: int) -> None:
        from tests.gateway.clients import handshake_request

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.sendall(handshake_request())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            head += chunk
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head.split(b"\r\n", 1)[0].decode())
        self.buffer = head.split(b"\r\n\r\n", 1)[1]
        self.count: int | None = None  # the last presence count heard
        self.heard_at = 0.0

    def send(self, **message: object) -> None:
        self.sock.sendall(frame(0x1, json.dumps(message).encode()))

    def feed(self, now: float) -> None:
        """Read what is there; remember the last presence count."""
        try:
            chunk = self.sock.recv(262144)
        except BlockingIOError:
            return
        self.buffer += chunk
        buf, at = self.buffer, 0
        while len(buf) - at >= 2:
            size, start = buf[at + 1] & 0x7F, at + 2
            if size == 126:
                if len(buf) - at < 4:
                    break
                (size,) = struct.unpack("!H", buf[at + 2 : at + 4])
                start = at + 4
            elif size == 127:
                if len(buf) - at < 10:
                    break
                (size,) = struct.unpack("!Q", buf[at + 2 : at + 10])
                start = at + 10
            if len(buf) - start < size:
                break
            opcode = buf[at] & 0x0F
            if opcode == 0x9:  # answer the gateway's pings
                self.sock.sendall(frame(0xA, bytes(buf[start : start + size])))
            elif opcode == 0x1:
                found = COUNT.search(buf, start, start + size)
                if found:
                    self.count, self.heard_at = int(found.group(1)), now
            at = start + size
        self.buffer = buf[at:]


class Watchers:
    """The members on gateway A, read by one selector."""

    def __init__(self, port: int, members: int) -> None:
        self.sockets = [Socket(port) for _ in range(members)]
        self.selector = selectors.DefaultSelector()
        for each in self.sockets:
            each.sock.setblocking(False)
            self.selector.register(each.sock, selectors.EVENT_READ, each)

    def pump(self, seconds: float) -> None:
        """Read for ``seconds``."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            for key, _ in self.selector.select(min(left, 0.05)):
                key.data.feed(time.monotonic())

    def until(self, count: int, timeout: float) -> float:
        """Read until every watcher heard ``count``; the last one's time."""
        deadline = time.monotonic() + timeout
        behind = [s for s in self.sockets if s.count != count]
        while behind:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(behind)} watchers never heard {count}")
            self.pump(0.02)
            behind = [s for s in behind if s.count != count]
        return max(s.heard_at for s in self.sockets)

    def send_all(self, action: str) -> None:
        for each in self.sockets:
            each.sock.setblocking(True)
            each.send(action=action, url=URL)
            each.sock.setblocking(False)
        self.pump(0.1)

    def close(self) -> None:
        for each in self.sockets:
            each.sock.close()


def measure(redis_url: str, members: int, rate: float, seconds: float, probes: int):
    from tests.support.gateway import Gateway

    raise_open_files(members + 2000)
    with (
        Gateway(redis_url, pushy_settings=OPEN) as a,
        Gateway(redis_url, pushy_settings=OPEN) as b,
    ):
        watchers = Watchers(a.port, members)
        churners = [Socket(b.port) for _ in range(max(4, int(rate)))]
        try:
            watchers.send_all("subscribe")
            watchers.pump(2)
            rss_subscribed = rss_bytes(a.pid)
            watchers.send_all("join")
            watchers.until(members, timeout=120)
            watchers.pump(2)
            rss_joined = rss_bytes(a.pid)

            idle = {g: cpu_seconds(g.pid) for g in (a, b)}
            watchers.pump(seconds)
            idle = {g: cpu_seconds(g.pid) - idle[g] for g in (a, b)}

            frames_before = a.get_json("/stats")["frames_out"]
            cpu = {g: cpu_seconds(g.pid) for g in (a, b)}
            changes, joined = 0, set()
            started = time.monotonic()
            while (elapsed := time.monotonic() - started) < seconds:
                if changes < elapsed * rate:
                    churner = churners[changes % len(churners)]
                    action = "leave" if churner in joined else "join"
                    churner.send(action=action, url=URL)
                    (joined.discard if action == "leave" else joined.add)(churner)
                    changes += 1
                watchers.pump(0.005)
            cpu = {g: cpu_seconds(g.pid) - cpu[g] - idle[g] for g in (a, b)}
            for churner in joined:
                churner.send(action="leave", url=URL)
            watchers.until(members, timeout=60)
            frames = a.get_json("/stats")["frames_out"] - frames_before

            reach = []
            prober = churners[0]
            for n in range(probes):
                watchers.pump(0.3)  # nothing else going on
                action, expected = (
                    ("join", members + 1)
                    if n % 2 == 0
                    else (
                        "leave",
                        members,
                    )
                )
                sent = time.monotonic()
                prober.send(action=action, url=URL)
                reach.append(watchers.until(expected, timeout=60) - sent)
        finally:
            watchers.close()
            for churner in churners:
                churner.sock.close()
    return {
        "members": members,
        "rate": rate,
        "changes": changes,
        "rss_per_member_bytes": round((rss_joined - rss_subscribed) / members),
        "cpu_per_change_ms": {
            "gateway_a_members": round(1000 * cpu[a] / changes, 3),
            "gateway_b_churners": round(1000 * cpu[b] / changes, 3),
        },
        "frames_out_per_change": round(frames / changes, 1),
        "reach_seconds": {
            "min": round(min(reach), 3),
            "median": round(statistics.median(reach), 3),
            "max": round(max(reach), 3),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--probes", type=int, default=10)
    args = parser.parse_args(argv)
    _setup()
    from tests.support.servers import RedisServer

    redis = RedisServer().start()
    try:
        result = measure(redis.url, args.members, args.rate, args.seconds, args.probes)
    finally:
        redis.stop()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
