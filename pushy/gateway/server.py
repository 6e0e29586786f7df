"""The gateway process: its parts, how they are wired, and its lifecycle.

``Gateway`` builds the hub, the Redis listener, the authorizer and the
acceptor, hands each what it needs (the ``Shared`` object of shared.py and
callbacks, never the gateway itself), upgrades requests for ``/ws`` (see
handshake.py), passes other requests to endpoints.py, runs the heartbeat
(heartbeat.py), and shuts down gracefully on SIGTERM or SIGINT.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import gevent
import gevent.event

from pushy import conf
from pushy.channels import explain_channel, presence_channel, resync_channel
from pushy.gateway import frames, memory, replies, sockets
from pushy.gateway.acceptor import Acceptor, answer_and_close
from pushy.gateway.actions import ClientActions
from pushy.gateway.admission import Admission
from pushy.gateway.connection import Connection
from pushy.gateway.endpoints import Endpoints
from pushy.gateway.explain import Explainer
from pushy.gateway.gate import Gate
from pushy.gateway.handshake import (
    Refusal,
    check_upgrade,
    parse_request,
    switch_response,
)
from pushy.gateway.heartbeat import Heartbeat
from pushy.gateway.hub import Hub
from pushy.gateway.listener import Hooks, Listener
from pushy.gateway.memory import Trimmer
from pushy.gateway.pauses import PauseMonitor
from pushy.gateway.permissions import Authorizer, origin_allowed
from pushy.gateway.presence import Presence, Recheck
from pushy.gateway.replay import Replay
from pushy.gateway.shared import Limits, Shared
from pushy.gateway.stats import Stats
from pushy.gateway.versions import VersionBook
from pushy.gateway.visitor import Visitor
from pushy.logs import Throttled
from pushy.messages import PUBLISHED_ROOM, Update
from pushy.redis_clients import redacted
from pushy.redis_cluster import is_cluster_url
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
# Refused handshakes are logged one by one, but no faster than this per reason.
REFUSAL_LOG_INTERVAL = 1.0
# How often freed memory is given back to the OS, if connections closed meanwhile.
TRIM_INTERVAL = 5.0


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


__all__ = ["Gateway", "Limits", "bind", "inherited"]


class ConnectionEvents:
    """What connections report, turned into calls on the parts that care
    (``shared.ConnectionEvents``)."""

    __slots__ = ("hub", "actions", "authorizer", "admission", "trimmer")

    def __init__(
        self,
        hub: Hub,
        actions: ClientActions,
        authorizer: Authorizer,
        admission: Admission,
        trimmer: Trimmer,
    ) -> None:
        self.hub = hub
        self.actions = actions
        self.authorizer = authorizer
        self.admission = admission
        self.trimmer = trimmer

    def joined(self, connection: Connection) -> None:
        self.hub.add(connection)

    def message(self, connection: Connection, payload: bytes) -> None:
        self.actions.handle(connection, payload)

    def leaving(self, connection: Connection) -> None:
        self.authorizer.forget(connection)

    def unsubscribe(self, connection: Connection) -> None:
        self.hub.remove(connection)

    def ended(self, connection: Connection) -> None:
        self.hub.remove(connection)
        self.admission.release(connection.client)
        self.authorizer.forget(connection)  # drops questions only it waited for
        self.trimmer.connection_closed()


class Gateway:
    """One gateway process."""

    def __init__(self, listen_socket: socket.socket) -> None:
        self.limits = Limits.from_settings()
        self.loop = gevent.get_hub().loop
        self.stats = Stats()
        # write_through is True while dispatch() fans out an update that found
        # the listener idle: a connection's writer then writes it at once.
        self.shared = Shared(self.limits, self.stats, self.loop)
        self.hub = Hub(self.stats)
        self._listener_idle = False
        self.authorizer = Authorizer(
            conf.get("DB_POOL_SIZE"), conf.get("AUTHORIZATION_TTL"), self.stats
        )
        if self.authorizer.needed:
            unsubscribe, limit = self.hub.unsubscribe, self.limits.queue_size
            self.hub.use_gate(Gate(self.authorizer, self.stats, unsubscribe, limit))
        self.admission = Admission.from_settings(self.stats)
        self.origins = conf.allowed_origins()
        self.websocket_paths = {"/ws", urlsplit(conf.websocket_url()).path}
        self.explainer = Explainer(self.hub, conf.get("REDIS_URL"))
        redis_url = conf.get("REDIS_URL")
        cluster = is_cluster_url(redis_url)
        if cluster:  # Redis Cluster mode is chosen here, once (issue 24)
            from pushy.gateway import cluster_listener
        self.presence = Presence(
            redis_url,
            conf.get("PRESENCE_LIMIT"),
            conf.get("PRESENCE_HEARTBEAT"),
            self.loop,
        )
        # A subscription that ends (unsubscribe, revocation, close) leaves it.
        self.hub.on_unsubscribe = self.presence.leave
        book = cluster_listener.ClusterVersionBook if cluster else VersionBook
        self.versions = book(
            redis_url, conf.get("VERSION_TTL"), on_epoch=self.resync_clients
        )
        self._resyncing = False
        # The horizon of a resync waiting to run (_NO_RESYNC: none waits).
        self._resync_horizon: int | None | object = _NO_RESYNC
        hooks = Hooks(
            update=self.dispatch,
            resync=self.resync,
            count=self._count,
            subscribed=lambda: gevent.spawn(self.versions.start_horizon),
            idle=self.listener_idle,
        )
        controls = {
            resync_channel(): lambda body: self.resync_requested(),
            explain_channel(): self.explainer.request,
            presence_channel(): self.presence.notice,
        }
        options = dict(
            quiet=(presence_channel(),),
            health_interval=conf.get("REDIS_HEALTH_INTERVAL"),
            # The stamp and the version are added after the publisher's size check.
            max_update_bytes=conf.get("MAX_UPDATE_BYTES")
            + PUBLISHED_ROOM
            + VERSION_ROOM,
        )
        if cluster:
            update = cluster_listener.dispatch_in_bucket(self.versions, self.dispatch)
            hooks = dataclasses.replace(hooks, update=update)
            self.listener: Any = cluster_listener.ClusterListener(
                redis_url,
                hooks,
                controls,
                coverage=self.versions.uncovered,
                **options,
            )
            self.hub.interest = self.versions.interest = self.listener.interest
        else:
            self.listener = Listener(
                redis_url,
                conf.get("CHANNEL_PREFIX") + "*",
                hooks,
                controls=controls,
                **options,
            )
        replay = Replay(
            redis_url, self.authorizer, self.stats, conf.get("HISTORY_LENGTH") > 0
        )
        self.actions = ClientActions(
            self.shared, self.hub, self.versions, self.authorizer, self.presence,
            replay=replay, interest=self.listener.interest if cluster else None,
        )  # fmt: skip
        self.acceptor = Acceptor(
            listen_socket, self.shared, self.admission, self.on_request
        )
        self.stopped = gevent.event.Event()
        self._refusal_logs: dict[str, Throttled] = {}
        self.shutting_down = False
        self.trimmer = Trimmer()
        self.pauses = PauseMonitor(self.stats)
        self.events = ConnectionEvents(
            self.hub, self.actions, self.authorizer, self.admission, self.trimmer
        )
        self.heartbeat = Heartbeat(
            self.hub.connections, self.stats, self.limits.ping_interval
        )
        self.endpoints = Endpoints(
            stats=self.stats,
            hub=self.hub,
            acceptor=self.acceptor,
            listener=self.listener,
            admission=self.admission,
            authorizer=self.authorizer,
            pauses=self.pauses,
            versions=self.versions,
            shutting_down=lambda: self.shutting_down,
            presence=self.presence,
        )

    # Lifecycle -----------------------------------------------------------

    def serve(self) -> int:
        """Serve until SIGTERM or SIGINT; the exit status."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            gevent.signal_handler(signum, self._on_signal, signum)
        self.listener.start()
        self.presence.start()
        self.acceptor.start()
        helpers = [
            gevent.spawn(self.heartbeat.run),
            gevent.spawn(self._trim_memory),
            gevent.spawn(self._probe_versions),
        ]
        if self.hub.gate is not None:  # members re-asked
            recheck = Recheck(
                self.presence,
                self.authorizer,
                self.hub.gate.revoke,
                conf.get("AUTHORIZATION_TTL"),
                conf.get("DB_POOL_SIZE"),
            )
            helpers.append(gevent.spawn(recheck.run))
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
        self.presence.stop()
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
            answer_and_close(sock, self.endpoints.answer(environ))

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
        Connection(self.shared, self.events, sock, visitor, client).start(rest)

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
        self.stats.arrived(update.published)
        if not self._listener_idle:
            sent = self.hub.dispatch(update)
        else:
            self._listener_idle = False
            shared = self.shared
            shared.write_through = True
            try:
                sent = self.hub.dispatch(update)
            finally:
                shared.write_through = False
        if sent and update.published is not None:
            # After the writers this dispatch woke (loop callbacks run in
            # order): then its frames are with the kernel, for every
            # subscriber not already waiting on a slow socket.
            self.loop.run_callback(self.stats.delivered, update.published)
        return sent

    def resync(self) -> None:
        """Redis is back after an outage: tell clients what they may have missed."""
        self.stats.redis_reconnects += 1
        self.presence.dirty = True  # notices were missed: read the rooms again
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
            horizon = self.versions.older(pending, horizon)
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
                    connection.send(replies.RESYNC)
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
                endpoints = self.endpoints
                endpoints.refused = self.versions.refusals() or endpoints.refused

    def resync_requested(self) -> None:
        """Changes were missed (the capture process, a publisher): all reload."""
        self.hub.broadcast(replies.RESYNC)
        gevent.spawn(self.versions.resync_announced)

    def _count(self, counter: str) -> None:
        setattr(self.stats, counter, getattr(self.stats, counter) + 1)

    def _trim_memory(self) -> None:
        """Give freed memory back to the OS after connections closed (memory.py)."""
        while True:
            gevent.sleep(TRIM_INTERVAL)
            self.trimmer.tick()
