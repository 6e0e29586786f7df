"""The gateway process: its HTTP endpoints, its parts, and its lifecycle.

``Gateway`` wires the hub, the Redis listener, the authorizer and the acceptor
together, upgrades requests for ``/ws`` (see handshake.py), answers ``/health``,
``/stats`` and ``/metrics``, pings clients, and shuts down gracefully on
SIGTERM or SIGINT.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
import socket
import time
from urllib.parse import urlsplit

import gevent
import gevent.event

from pushy import conf
from pushy.channels import explain_channel, resync_channel
from pushy.gateway import frames, memory, sockets
from pushy.gateway.acceptor import Acceptor, answer_and_close
from pushy.gateway.admission import Admission
from pushy.gateway.connection import Connection
from pushy.gateway.explain import Explainer
from pushy.gateway.gate import Gate
from pushy.gateway.handshake import (
    Refusal,
    check_upgrade,
    http_response,
    parse_request,
    switch_response,
)
from pushy.gateway.hub import RESYNC_FRAME, Hub
from pushy.gateway.listener import Hooks, Listener
from pushy.gateway.memory import Trimmer
from pushy.gateway.pauses import PauseMonitor
from pushy.gateway.permissions import Authorizer, origin_allowed
from pushy.gateway.protocol import Protocol
from pushy.gateway.stats import Stats, prometheus_text, seconds_since
from pushy.gateway.versions import VersionBook
from pushy.gateway.visitor import Visitor
from pushy.logs import Throttled
from pushy.messages import PUBLISHED_ROOM, Update
from pushy.redis_clients import redacted
from pushy.versions import VERSION_ROOM

logger = logging.getLogger(__name__)

# No resync waits to run (resync_clients).
_NO_RESYNC = object()
# Seconds between version probes while the last one found a problem.
PROBE_RETRY = 0.5

# Clients closed per event-loop turn at shutdown, so closing thousands of
# clients does not starve the loop that writes their close frames.
SHUTDOWN_BATCH = 500
# How long start-up waits for the first Redis subscription before logging anyway.
STARTUP_REDIS_WAIT = 5.0
PING_FRAME = frames.build_frame(frames.OP_PING, b"")
# A client must answer a ping within this, or by the next ping if that is sooner.
MAX_PONG_WAIT = 10.0
# The pings of one round go out over this share of the wait for answers, a
# slice every HEARTBEAT_STEP seconds, never all at once (see _heartbeat).
HEARTBEAT_SPREAD = 0.25
HEARTBEAT_STEP = 0.01
# Refused handshakes are logged one by one, but no faster than this per reason.
REFUSAL_LOG_INTERVAL = 1.0
# How often freed memory is given back to the OS, if connections closed meanwhile.
TRIM_INTERVAL = 5.0


@dataclasses.dataclass(frozen=True)
class Limits:
    """The PUSHY_SETTINGS limits, read once at start-up."""

    max_message: int
    max_subscriptions: int
    max_subscription_bytes: int
    queue_size: int
    queue_bytes: int
    write_timeout: float
    handshake_timeout: float
    shutdown_timeout: float
    ping_interval: float
    rate: float
    burst: int

    @classmethod
    def from_settings(cls) -> Limits:
        return cls(
            max_message=conf.get("MAX_MESSAGE_BYTES"),
            max_subscriptions=conf.get("MAX_SUBSCRIPTIONS"),
            max_subscription_bytes=conf.get("MAX_SUBSCRIPTION_BYTES"),
            queue_size=conf.get("SEND_QUEUE_SIZE"),
            queue_bytes=conf.get("SEND_QUEUE_BYTES"),
            write_timeout=conf.get("WRITE_TIMEOUT"),
            handshake_timeout=conf.get("HANDSHAKE_TIMEOUT"),
            shutdown_timeout=conf.get("SHUTDOWN_TIMEOUT"),
            ping_interval=conf.get("PING_INTERVAL"),
            rate=conf.get("RATE_LIMIT"),
            burst=max(conf.get("MAX_SUBSCRIPTIONS"), 1),
        )


def bind(host: str | None, port: int | None, unix_path: str | None) -> socket.socket:
    """A listening socket: TCP on host:port, or a Unix socket at ``unix_path``."""
    sock = sockets.listen(host, port, unix_path)
    sock.setblocking(False)
    return sock


def inherited(fd: int) -> socket.socket:
    """The listening socket a ``runpushy --workers`` supervisor passed down."""
    sock = socket.socket(fileno=fd)
    sock.setblocking(False)
    return sock


def pong_deadline(pinged_at: float, pings_done: float, wait: float) -> float:
    """When a heartbeat round may close the clients still silent.

    ``wait`` after the round began, and never sooner than three quarters of it
    after its last ping went out. The pings go out in HEARTBEAT_STEP sleeps, and
    a loop busy with a connect storm stretches each: bench.scale measured a
    2.5 s spread taking 18 to 22 s at 17,000 connections per process, and the
    clients pinged last were closed (1008) before they could answer.
    """
    return max(pinged_at + wait, pings_done + wait * (1 - HEARTBEAT_SPREAD))


class Gateway:
    """One gateway process."""

    def __init__(self, listen_socket: socket.socket) -> None:
        self.limits = Limits.from_settings()
        self.loop = gevent.get_hub().loop
        self.stats = Stats()
        self.hub = Hub(self.stats)
        # True while dispatch() fans out an update that found the listener
        # idle: Connection.send() then writes its frame at once (dispatch()).
        self.write_through = False
        self._listener_idle = False
        self.protocol = Protocol(self)
        self.authorizer = Authorizer(
            conf.get("DB_POOL_SIZE"), conf.get("AUTHORIZATION_TTL"), self.stats
        )
        if self.authorizer.needed:
            self.hub.gate = Gate(self.hub, self.authorizer, self.limits.queue_size)
        self.admission = Admission.from_settings(self.stats)
        self.origins = conf.allowed_origins()
        self.websocket_paths = {"/ws", urlsplit(conf.websocket_url()).path}
        self.explainer = Explainer(self.hub, conf.get("REDIS_URL"))
        self.versions = VersionBook(
            conf.get("REDIS_URL"), conf.get("VERSION_TTL"), on_epoch=self.resync_clients
        )
        self._resyncing = False
        # Updates refused at publish by the whole site, per reason (/metrics).
        self.refused: dict[str, int] = {}
        # The horizon of a resync waiting to run (_NO_RESYNC: none waits).
        self._resync_horizon: int | None | object = _NO_RESYNC
        self.listener = Listener(
            conf.get("REDIS_URL"),
            conf.get("CHANNEL_PREFIX") + "*",
            Hooks(
                update=self.dispatch,
                resync=self.resync,
                count=self._count,
                subscribed=lambda: gevent.spawn(self.versions.start_horizon),
                idle=self.listener_idle,
            ),
            controls={
                resync_channel(): lambda body: self.resync_requested(),
                explain_channel(): self.explainer.request,
            },
            health_interval=conf.get("REDIS_HEALTH_INTERVAL"),
            # The stamp and the version are added after the publisher's size check.
            max_update_bytes=conf.get("MAX_UPDATE_BYTES")
            + PUBLISHED_ROOM
            + VERSION_ROOM,
        )
        self.acceptor = Acceptor(listen_socket, self)
        self.stopped = gevent.event.Event()
        self._refusal_logs: dict[str, Throttled] = {}
        self.shutting_down = False
        self.trimmer = Trimmer()
        self.pauses = PauseMonitor(self.stats)

    # Lifecycle -----------------------------------------------------------

    def serve(self) -> int:
        """Serve until SIGTERM or SIGINT; the exit status."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            gevent.signal_handler(signum, self._on_signal, signum)
        self.listener.start()
        self.acceptor.start()
        helpers = [
            gevent.spawn(self._heartbeat),
            gevent.spawn(self._trim_memory),
            gevent.spawn(self._probe_versions),
        ]
        self.listener.first_attempt.wait(STARTUP_REDIS_WAIT)
        memory.freeze_startup_objects()
        helpers.append(self.pauses.start())  # after the start-up's own collection
        logger.info(self.startup_line())
        self.stopped.wait()
        gevent.killall(helpers)
        self.pauses.stop()
        return 0

    def startup_line(self) -> str:
        address = self.acceptor.address
        if isinstance(address, str):
            where = f"unix:{address} (path /ws)"
        else:
            host = f"[{address[0]}]" if ":" in address[0] else address[0]
            where = (
                f"http://{host}:{address[1]}/ (WebSocket ws://{host}:{address[1]}/ws)"
            )
        state = "subscribed" if self.listener.live else "not reachable yet"
        models = ", ".join(sorted(conf.model_labels())) or "none"
        admission = self.admission
        return (
            f"pushy gateway serving {where}; Redis {redacted(self.listener.url)} "
            f"pattern {self.listener.pattern} ({state}); models: {models}; "
            f"max connections {admission.max_connections or 'unlimited'} "
            f"(per client {admission.per_client or 'unlimited'})"
        )

    def _on_signal(self, signum: int) -> None:
        if not self.shutting_down:
            gevent.spawn(self.shutdown, signal.Signals(signum).name)

    def shutdown(self, why: str = "shutdown") -> None:
        """Stop accepting, close every client with 1001, and stop within a bound."""
        self.shutting_down = True
        logger.info("%s: closing %d clients", why, len(self.hub.connections))
        self.acceptor.close()
        deadline = time.monotonic() + self.limits.shutdown_timeout
        clients = list(self.hub.connections)
        for start in range(0, len(clients), SHUTDOWN_BATCH):
            for client in clients[start : start + SHUTDOWN_BATCH]:
                client.close(frames.CLOSE_GOING_AWAY, "server shutting down")
            gevent.sleep(0)
        while self.hub.connections and time.monotonic() < deadline:
            gevent.sleep(0.05)
        self.listener.stop()
        self.authorizer.close()
        logger.info("pushy gateway stopped")
        self.stopped.set()

    # Clients -------------------------------------------------------------

    def check_origin(self, origin: str | None) -> None:
        if not origin_allowed(origin, self.origins):
            raise Refusal(
                "403 Forbidden",
                "origin not allowed",
                detail=f"Origin {origin!r} is not allowed; allowed hosts (any port, "
                f"http or https): {self.origins}. Set PUSHY_SETTINGS"
                "['ALLOWED_ORIGINS'] (default: ALLOWED_HOSTS and the SOCKET_SERVER "
                "host, plus localhost with DEBUG)",
            )

    def log_refusal(self, refusal: Refusal, environ: dict) -> None:
        """One INFO line per refused handshake, at most one a second per reason."""
        throttled = self._refusal_logs.get(refusal.message)
        if throttled is None:
            throttled = self._refusal_logs[refusal.message] = Throttled(
                logger, interval=REFUSAL_LOG_INTERVAL
            )
        throttled.log(
            logging.INFO,
            "refused a WebSocket handshake from %s with %s: %s",
            environ.get("REMOTE_ADDR") or "a Unix socket peer",
            refusal.status,
            refusal.detail,
        )

    def on_request(
        self, sock: socket.socket, head: bytes, rest: bytes, remote_addr: str
    ) -> None:
        """A request's head is in (acceptor.py): upgrade it or answer it."""
        try:
            environ = parse_request(head, remote_addr)
        except Refusal as refusal:
            answer_and_close(sock, refusal.response())
            return
        if environ["PATH_INFO"] in self.websocket_paths:
            self.upgrade(sock, environ, rest)
        else:
            answer_and_close(sock, self.http_answer(environ))

    def upgrade(self, sock: socket.socket, environ: dict, rest: bytes) -> None:
        """Make ``sock`` a WebSocket client, or answer why not."""
        try:
            if self.shutting_down:
                raise Refusal("503 Service Unavailable", "shutting down")
            key = check_upgrade(environ)
            self.check_origin(environ.get("HTTP_ORIGIN"))
            # Last: only a valid request from an allowed origin takes a place.
            client = self.admission.admit(environ)
        except Refusal as refusal:
            self.stats.handshakes_refused += 1
            if not refusal.logged:
                self.log_refusal(refusal, environ)
            answer_and_close(sock, refusal.response())
            return
        try:
            sock.send(switch_response(key))  # a fresh socket takes it whole
        except OSError:
            self.admission.release(client)
            sock.close()
            return
        self.stats.connections_total += 1
        visitor = Visitor.from_handshake(environ, self.admission.trusted)
        Connection(self, sock, visitor, client).start(rest)

    def connection_ended(self, connection: Connection) -> None:
        """``connection`` left (its socket may still send a close frame)."""
        self.hub.remove(connection)
        self.admission.release(connection.client)
        self.authorizer.forget(connection)  # drops questions only it waited for
        self.trimmer.connection_closed()

    def listener_idle(self) -> None:
        """Nothing more waits to be read from Redis (see dispatch())."""
        self._listener_idle = True

    def dispatch(self, update: Update) -> int:
        """Fan ``update`` out; one that arrives alone is written at once.

        An update the listener had to wait for is written to each subscriber
        as the fan-out reaches it, so the first subscriber need not wait for
        the thousandth to be queued (about 1 ms at 1,000: bench/results/PROFILE.md,
        section 6). The updates of a burst, read from Redis behind it, are
        queued, and each connection's writer sends them in one write.
        """
        self.versions.saw(update.version)
        if update.published is not None:
            self.stats.update_arrival_seconds.observe(seconds_since(update.published))
        if not self._listener_idle:
            sent = self.hub.dispatch(update)
        else:
            self._listener_idle = False
            self.write_through = True
            try:
                sent = self.hub.dispatch(update)
            finally:
                self.write_through = False
        if sent and update.published is not None:
            # After the writers this dispatch woke (loop callbacks run in
            # order): then its frames are with the kernel, for every
            # subscriber not already waiting on a slow socket.
            self.loop.run_callback(self._delivered, update.published)
        return sent

    def _delivered(self, published: float) -> None:
        self.stats.update_delivery_seconds.observe(seconds_since(published))

    def resync(self) -> None:
        """Redis is back after an outage: tell clients what they may have missed."""
        self.stats.redis_reconnects += 1
        self.resync_clients()

    def resync_clients(self) -> None:
        """Resync what clients cannot be sure of (after an outage, a new epoch).

        The horizon is taken now, before the listener dispatches anything that
        arrived after the outage: read later, updates published late (a
        publisher's queue emptying once Redis is back) would have moved it past
        the changes that were lost. A resync asked for while one runs runs
        again after it, from the older of the two horizons.
        """
        horizon = self.versions.horizon
        if self._resync_horizon is not _NO_RESYNC:
            pending = self._resync_horizon
            horizon = None if None in (pending, horizon) else min(pending, horizon)
        self._resync_horizon = horizon
        if not self._resyncing:
            self._resyncing = True
            gevent.spawn(self._resync_after_outage)

    def _resync_after_outage(self) -> None:
        # Clients that send versions get a resync per changed URL; the others
        # (and all, when versions cannot be read) the v1 "everything". The
        # lookup inside may itself find a new epoch: this resync covers it.
        try:
            while self._resync_horizon is not _NO_RESYNC:
                horizon, self._resync_horizon = self._resync_horizon, _NO_RESYNC
                for connection in self.versions.after_outage(self.hub, horizon):
                    connection.send(RESYNC_FRAME)
        finally:
            self._resyncing = False

    def _probe_versions(self) -> None:
        """Ask Redis about versions now and then, so /health and epochs stay true."""
        interval = conf.get("REDIS_HEALTH_INTERVAL")
        while True:
            # Sooner while something is wrong, so /health turns 200 soon after.
            troubled = self.versions.problem is not None
            gevent.sleep(min(interval, PROBE_RETRY) if troubled else interval)
            if self.listener.live:
                self.versions.probe()
                self.refused = self.versions.refusals() or self.refused

    def resync_requested(self) -> None:
        """Changes were missed (the capture process, a publisher): all reload."""
        self.hub.broadcast(RESYNC_FRAME)
        gevent.spawn(self.versions.resync_announced)

    def _count(self, counter: str) -> None:
        setattr(self.stats, counter, getattr(self.stats, counter) + 1)

    def _heartbeat(self) -> None:
        """Ping everyone each PING_INTERVAL; close who stayed silent after a ping.

        A ping to every client at once put thousands of writes (and then as
        many pongs to read) in front of any update that arrived meanwhile: a
        latency tail every PING_INTERVAL (bench/results/PROFILE.md, section 5). So the
        pings go out in slices over a quarter of the wait; every client still
        has at least three quarters of it to answer, however long a busy loop
        made the slices take (``pong_deadline``).
        """
        interval = self.limits.ping_interval
        wait = min(interval, MAX_PONG_WAIT)
        while True:
            pinged_at = time.monotonic()
            self._ping_spread(list(self.hub.connections), wait * HEARTBEAT_SPREAD)
            deadline = pong_deadline(pinged_at, time.monotonic(), wait)
            gevent.sleep(max(0.0, deadline - time.monotonic()))
            for client in list(self.hub.connections):
                # A client whose reading we paused (its message waits on an
                # authorization, or the rate limit) may have answered unread.
                if (
                    client.last_seen < pinged_at
                    and not client.closing
                    and client.paused is None
                ):
                    self.stats.ping_timeouts += 1
                    client.close(frames.CLOSE_POLICY, "ping timeout")
            gevent.sleep(interval - wait)

    def _ping_spread(self, clients: list[Connection], spread: float) -> None:
        if not clients:
            return
        steps = max(1, int(spread / HEARTBEAT_STEP))
        size = -(-len(clients) // steps)  # ceiling: every client within the spread
        for start in range(0, len(clients), size):
            for client in clients[start : start + size]:
                if not client.finished:
                    client.send(PING_FRAME)
            gevent.sleep(HEARTBEAT_STEP)

    def _trim_memory(self) -> None:
        """Give freed memory back to the OS after connections closed (memory.py)."""
        while True:
            gevent.sleep(TRIM_INTERVAL)
            self.trimmer.tick()

    # HTTP endpoints ------------------------------------------------------

    def snapshot(self) -> dict:
        snapshot = self.stats.snapshot(
            len(self.hub.connections), self.hub.subscriptions, self.listener.live
        )
        snapshot["max_connections"] = self.admission.max_connections
        snapshot["authorizations_pending"] = self.authorizer.pending
        questions = self.authorizer.questions
        snapshot["questions_waiting"] = questions.waiting
        snapshot["questions_running"] = questions.running - len(questions.overrunning)
        snapshot["questions_overrunning"] = len(questions.overrunning)
        snapshot.update(self.pauses.snapshot())
        snapshot["site_updates_refused"] = self.refused
        return snapshot

    def health(self) -> tuple[str, dict]:
        """/health's status line and body: 503 while what is published cannot
        be arriving here (docs/protocol.md, "Operations endpoints")."""
        if self.shutting_down:
            reason = "shutting_down"
        elif not self.listener.live:
            reason = "redis_subscription_down"
        else:
            reason = self.versions.problem
        if reason is None:
            return "200 OK", {"status": "ok", "redis": True}
        body = {"status": "unavailable", "redis": False, "reason": reason}
        return "503 Service Unavailable", body

    def http_answer(self, environ: dict) -> bytes:
        """The answer to a plain HTTP request (not an upgrade)."""
        path = environ["PATH_INFO"]
        if path == "/health":
            answer = _json(*self.health())
        elif path == "/stats":
            answer = _json("200 OK", self.snapshot())
        elif path == "/metrics":
            text = prometheus_text(self.snapshot()).encode()
            content_type = "text/plain; version=0.0.4; charset=utf-8"
            answer = http_response("200 OK", content_type, text)
        else:
            answer = http_response("404 Not Found", "text/plain", b"not found\n")
        if environ["REQUEST_METHOD"] == "HEAD":
            return answer[: answer.index(b"\r\n\r\n") + 4]
        return answer


def _json(status: str, body: dict) -> bytes:
    return http_response(status, "application/json", json.dumps(body).encode())
