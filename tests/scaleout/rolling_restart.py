"""A rolling restart of two gateways behind a real nginx, measured.

``RollingRestart`` runs the whole scenario: two ``runpushy`` gateways on free
ports, nginx in front of them with an nginx block (the documented one unless
told otherwise), and a crowd of raw WebSocket clients that reconnect through
nginx with a short backoff whenever they are closed. Then, for each gateway in
turn: SIGTERM (its clients are closed with 1001 and come back through nginx),
start it again on the same port, wait for its ``/health`` to answer 200, and
open a few fresh connections through nginx to see whether it gets its share.

Every handshake through nginx is recorded (when, and the status nginx
answered), so a test can count the 502s and how long each client stayed away;
``Report`` sums that up.
"""

from __future__ import annotations

import random
import select
import struct
import threading
import time
from dataclasses import dataclass, field

from tests.gateway.clients import RawClient, frame
from tests.support.gateway import Gateway
from tests.support.nginx import Nginx
from tests.support.servers import free_port

WS_PATH = "/pushy/ws"


@dataclass
class Attempt:
    """One handshake through nginx."""

    started: float
    ended: float
    status: int | str  # the HTTP status nginx answered, else what went wrong


@dataclass
class Away:
    """A client from the moment it was closed to its next accepted handshake."""

    closed: float
    back: float | None = None  # None: never came back within the run
    failed: int = 0  # handshakes refused meanwhile


class ReconnectingClient(threading.Thread):
    """A raw WebSocket client that reconnects through nginx when it is closed.

    It waits a random 50 to 250 ms before each attempt after the first (the
    short end of a browser's jittered backoff), answers pings, and otherwise
    holds its connection until it is closed or the crowd is told to stop.
    """

    def __init__(self, crowd: Crowd, backoff: tuple[float, float]) -> None:
        super().__init__(daemon=True)
        self.crowd = crowd
        self.backoff = backoff
        self.attempts: list[Attempt] = []
        self.aways: list[Away] = []
        self.connected = False

    def run(self) -> None:
        first = True
        while not self.crowd.stopping.is_set():
            if not first and self.crowd.stopping.wait(random.uniform(*self.backoff)):
                return
            first = False
            raw = self._handshake()
            if raw is None:
                continue
            try:
                self._hold(raw)
            finally:
                raw.close()

    def _handshake(self) -> RawClient | None:
        started = time.monotonic()
        raw = None
        try:
            raw = RawClient("127.0.0.1", self.crowd.port, timeout=5)
            head = raw.upgrade(path=WS_PATH, Origin=self.crowd.origin)
            status: int | str = int(head.split(" ", 2)[1])
        except OSError as e:
            status = type(e).__name__
        self.attempts.append(Attempt(started, time.monotonic(), status))
        if status == 101:
            if self.aways and self.aways[-1].back is None:
                self.aways[-1].back = time.monotonic()
            self.crowd.changed(self, connected=True)
            return raw
        if self.aways and self.aways[-1].back is None:
            self.aways[-1].failed += 1
        if raw is not None:
            raw.close()
        return None

    def _hold(self, raw: RawClient) -> None:
        """Read frames until the connection ends or the crowd stops."""
        try:
            while not self.crowd.stopping.is_set():
                if not raw.buffer and not select.select([raw.sock], [], [], 0.2)[0]:
                    continue
                opcode, payload = raw.recv_frame()
                if opcode == 0x9:  # ping
                    raw.send(frame(0xA, payload))
                elif opcode == 0x8:  # close: answer it, then the server hangs up
                    raw.send(frame(0x8, payload[:2]))
                    break
        except (OSError, ConnectionError, struct.error):
            pass
        if not self.crowd.stopping.is_set():
            self.aways.append(Away(time.monotonic()))
            self.crowd.changed(self, connected=False)


class Crowd:
    """Many ``ReconnectingClient``s, and a way to wait until all are connected."""

    def __init__(self, port: int, backoff: tuple[float, float] = (0.05, 0.25)) -> None:
        self.port = port
        self.origin = f"http://127.0.0.1:{port}"
        self.backoff = backoff
        self.clients: list[ReconnectingClient] = []
        self.stopping = threading.Event()
        self._cond = threading.Condition()

    def add(self, count: int) -> list[ReconnectingClient]:
        new = [ReconnectingClient(self, self.backoff) for _ in range(count)]
        with self._cond:
            self.clients += new
        for client in new:
            client.start()
        return new

    def changed(self, client: ReconnectingClient, connected: bool) -> None:
        with self._cond:
            client.connected = connected
            self._cond.notify_all()

    def wait_all_connected(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(
                lambda: all(c.connected for c in self.clients), timeout
            )

    def attempts(self) -> list[Attempt]:
        return sorted(
            (a for c in self.clients for a in c.attempts), key=lambda a: a.started
        )

    def aways(self) -> list[Away]:
        return [a for c in self.clients for a in c.aways]

    def stop(self) -> None:
        self.stopping.set()
        for client in self.clients:
            client.join(5)


@dataclass
class Phase:
    """One gateway's restart, timed on the monotonic clock."""

    gateway: int  # 1 or 2
    signalled: float = 0.0  # SIGTERM sent
    stopped: float = 0.0  # its process has exited
    healthy: float = 0.0  # the new process answered /health 200
    reconnected_all: float | None = None  # every client connected again
    probes_ok: int = 0  # fresh handshakes through nginx answered 101
    probes_here: int = 0  # connections the restarted gateway gained meanwhile
    probe_seconds: float = 0.0  # until every fresh handshake was answered 101


@dataclass
class Report:
    """What a run measured."""

    config: str
    phases: list[Phase] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    aways: list[Away] = field(default_factory=list)
    nginx_errors: str = ""
    access_log: str = ""

    def count(self, status: int | str, since: float = 0.0) -> int:
        """How many handshakes started at ``since`` or later got ``status``."""
        return sum(
            1 for a in self.attempts if a.status == status and a.started >= since
        )

    def reconnects(self) -> list[Attempt]:
        """The handshakes made from the first SIGTERM on."""
        return [a for a in self.attempts if a.started >= self.phases[0].signalled]

    def both_back(self) -> float:
        """When the last gateway restarted answered /health 200."""
        return self.phases[-1].healthy

    def longest_away(self) -> float:
        """The longest a client was without a connection, or inf: never back."""
        return max(
            ((a.back if a.back else float("inf")) - a.closed for a in self.aways),
            default=0.0,
        )

    def summary(self) -> str:
        reconnects = self.reconnects()
        failed = [a for a in reconnects if a.status != 101]
        lines = [
            f"{len(failed)} of {len(reconnects)} handshakes from the first SIGTERM on "
            f"failed ({self.count(502)} answered 502, "
            f"{self.count(502, self.both_back())} of them after both gateways "
            f"answered /health again); {len(self.aways)} disconnections, the "
            f"longest away {self.longest_away():.2f} s, "
            f"{sum(1 for a in self.aways if a.back is None)} never back",
        ]
        for p in self.phases:
            back = (
                f"{p.reconnected_all - p.signalled:.2f} s"
                if p.reconnected_all is not None
                else "not within the run"
            )
            lines.append(
                f"gateway {p.gateway}: every client back {back} after SIGTERM; "
                f"healthy again {p.healthy - p.signalled:.2f} s after it; then "
                f"{p.probes_ok} fresh handshakes ok, {p.probes_here} of them on it "
                f"({p.probe_seconds:.2f} s)"
            )
        return "\n".join(lines)


class RollingRestart:
    """Two gateways, nginx in front, a crowd of clients: restart one at a time."""

    def __init__(
        self,
        redis_url: str,
        config: str | None = None,
        clients: int = 40,
        probes: int = 10,
        settle: float = 3.0,
    ) -> None:
        self.redis_url = redis_url
        self.config = config
        self.client_count = clients
        self.probe_count = probes
        self.settle = settle  # how long to wait for every client to be back
        self.gateways: list[Gateway] = []
        self.nginx: Nginx | None = None
        self.crowd: Crowd | None = None

    def run(self) -> Report:
        try:
            return self._run()
        finally:
            self.close()

    def _run(self) -> Report:
        self.gateways = [Gateway(self.redis_url), Gateway(self.redis_url)]
        for gw in self.gateways:
            gw.start()
        ports = [gw.port for gw in self.gateways]
        self.nginx = Nginx(ports, site_port=free_port(), config=self.config).start()
        self.crowd = Crowd(self.nginx.port)
        self.crowd.add(self.client_count)
        if not self.crowd.wait_all_connected(10):
            raise AssertionError("the clients did not all connect through nginx")
        report = Report(config=self.nginx.config.read_text())
        for index in range(len(self.gateways)):
            report.phases.append(self._restart(index))
        self.crowd.stop()
        report.attempts = self.crowd.attempts()
        report.aways = self.crowd.aways()
        report.nginx_errors = self.nginx.log()
        report.access_log = self.nginx.access_log()
        return report

    def _restart(self, index: int) -> Phase:
        phase = Phase(gateway=index + 1)
        old = self.gateways[index]
        phase.signalled = time.monotonic()
        old.stop()  # SIGTERM; its clients are closed with 1001; waits for the exit
        phase.stopped = time.monotonic()
        new = Gateway(self.redis_url, port=old.port)
        self.gateways[index] = new
        new.start()
        new.wait_for_health(200, timeout=10)
        phase.healthy = time.monotonic()
        # The clients closed by the stop are back on the other gateway by now,
        # unless nginx would not let them.
        self.crowd.wait_all_connected(
            max(0.1, self.settle - (phase.healthy - phase.stopped))
        )
        closed = [a for a in self.crowd.aways() if a.closed >= phase.signalled]
        if all(a.back is not None for a in closed):
            phase.reconnected_all = max((a.back for a in closed), default=phase.stopped)
        phase.probes_ok, phase.probes_here, phase.probe_seconds = self._probe(new)
        return phase

    def _probe(self, gateway: Gateway) -> tuple[int, int, float]:
        """Fresh clients through nginx: how many connected, how many on ``gateway``."""
        before = gateway.get_json("/stats")["connections"]
        start = time.monotonic()
        new = self.crowd.add(self.probe_count)
        ok = self.crowd.wait_all_connected(self.settle)
        took = time.monotonic() - start
        connected = sum(1 for c in new if c.connected) if not ok else len(new)
        here = gateway.get_json("/stats")["connections"] - before
        return connected, here, took

    def close(self) -> None:
        if self.crowd is not None:
            self.crowd.stop()
        if self.nginx is not None:
            self.nginx.stop()
        for gw in self.gateways:
            gw.stop()
