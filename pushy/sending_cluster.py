"""The sender's side of Redis Cluster mode: its commands, routed per master.

``pushy.sending`` builds one pipeline per attempt and reads the answers in
order; on a cluster each command must go to the master owning its key's slot
(``pushy.redis_cluster``). ``ClusterLink`` keeps ``_Link``'s interface: it
writes each master's share of the pipeline on that master's connection, then
reads the answers back in the pipeline's order (each master answers its own
commands in order). Chosen once, when the sender is made.
"""

from __future__ import annotations

import select
from typing import Any

import redis
from redis.exceptions import AskError, ClusterDownError, MovedError, TryAgainError

from pushy import redis_cluster, sending, versions


def command(item: Any, ttl: int, sender: str) -> tuple:
    """The command publishing ``item`` (``sending._command`` for a cluster)."""
    update = item.update
    if item.mode == sending.VERSIONED:
        return redis_cluster.publish_command(
            update, ttl, sender, str(item.seq), update.encode()
        )
    if item.mode == sending.PLAIN_BARE:
        update = update.replace(data=None)
    return redis_cluster.plain_command(update, update.encode())


def redirected(reply: object) -> bool:
    """Whether the cluster refused to run a command where it was sent: MOVED
    (the slot has another master: a failover, a migration done), ASK or
    TRYAGAIN (the slot is migrating), CLUSTERDOWN (no master for it yet)."""
    return isinstance(reply, (AskError, TryAgainError, ClusterDownError))


def moved(reply: object) -> bool:
    """A MOVED answer: reading the slot map again sends the command right."""
    return isinstance(reply, MovedError)


def lose_commands(channel: str, body: str) -> list[tuple]:
    """LOSE_SCRIPT on every book; bucket 0's last, publishing the request."""
    commands = [
        ("EVAL", redis_cluster.LOSE_SCRIPT, 1, redis_cluster.book_key(n),
         *versions.lose_args())
        for n in range(1, redis_cluster.BUCKETS)
    ]  # fmt: skip
    args = versions.lose_args(None, channel, body)
    commands.append(
        ("EVAL", redis_cluster.LOSE_SCRIPT, 1, redis_cluster.book_key(0), *args)
    )
    return commands


class ClusterLink:
    """``sending._Link`` over a connection per master (see the module).

    A set-up command (``CLIENT SETNAME``, ``SCRIPT LOAD``) goes to every master;
    its answer is the first refusal among theirs, else the last one.

    The slot map is read again before connecting anew (a connection failed: a
    master may have died and its replica taken over) and after the cluster
    sent a command elsewhere (``redirected()``).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.client: redis.RedisCluster | None = None
        self.conns: dict[str, Any] = {}  # a master's name: its connection
        self.route: list[list[Any]] = []  # the connections of each command written
        self.position = 0  # commands of the last write fully answered
        self.partial: list[Any] = []  # answers read of the command at ``position``
        self.timeout = 0.0
        self.poller: Any = None
        self.fresh = False  # no answer read yet
        self.load = True  # load the script before the next batch
        self.remap = False  # read the slot map before connecting again

    def drop(self) -> None:
        conns, self.conns, self.poller = self.conns, {}, None
        self.remap = True
        for conn in conns.values():
            conn.disconnect()

    def redirected(self) -> None:
        """The cluster sent a command elsewhere: read the map, connect anew."""
        self.remap = True

    def ready(self, timeout: float) -> None:
        """A connection to each master (all anew if any is gone or stale)."""
        client = sending.get_client()
        if client is not self.client:
            self.drop()
            self.client = client
            self.remap = False  # a new client has just read the map
        if self.conns and not self.remap and not self._stale():
            self.fresh = False
            return
        remap = self.remap
        self.drop()
        with redis_cluster.redis_errors():
            if remap:
                client.nodes_manager.initialize()
            self._connect(client, timeout)
        self.remap = False
        self.fresh = self.load = True

    def _connect(self, client: redis.RedisCluster, timeout: float) -> None:
        for primary in client.get_primaries():
            pool = client.get_redis_connection(primary).connection_pool
            conn = pool.make_connection()
            conn.socket_connect_timeout = conn.socket_timeout = max(timeout, 0.001)
            conn.connect()
            self.conns[primary.name] = conn
        self.timeout = max(timeout, 0.001)
        socks = [getattr(conn, "_sock", None) for conn in self.conns.values()]
        if hasattr(select, "poll") and None not in socks:
            self.poller = select.poll()
            for sock in socks:
                self.poller.register(sock, select.POLLIN)

    def _stale(self) -> bool:
        """Whether Redis closed an idle connection: one poll for them all first."""
        if self.poller is not None and not self.poller.poll(0):
            return False  # nothing to read on any: the usual case
        return any(map(_stale, self.conns.values()))

    def setup(self) -> list[tuple]:
        """Commands sent first (to every master): name the connections, load."""
        commands = []
        if self.fresh:
            commands.append(("CLIENT", "SETNAME", self.name))
        if self.load:
            commands.append(versions.load(redis_cluster.PUBLISH_SCRIPT))
            self.load = False
        return commands

    def write(self, commands: list[tuple], timeout: float) -> None:
        self._set_timeout(timeout)
        slots = self.client.nodes_manager
        everyone = list(self.conns.values())
        shares: dict[int, list[tuple]] = {id(conn): [] for conn in everyone}
        self.route = []
        for command in commands:
            slot = redis_cluster.command_slot(command)
            targets = everyone if slot is None else [self._owner(slots, slot)]
            for conn in targets:
                shares[id(conn)].append(command)
            self.route.append(targets)
        self.position, self.partial = 0, []
        for conn in everyone:
            if shares[id(conn)]:
                packed = conn.pack_commands(shares[id(conn)])
                conn.send_packed_command(packed, check_health=False)

    def _owner(self, slots: Any, slot: int) -> Any:
        """The connection to the master of ``slot``, as the map read says."""
        with redis_cluster.redis_errors():
            name = slots.get_node_from_slot(slot).name
        conn = self.conns.get(name)
        if conn is None:  # the map changed since connecting: read it, reconnect
            raise redis.ConnectionError(f"slot {slot} is on {name}, not connected")
        return conn

    def read(self, timeout: float) -> Any:
        if timeout <= 0:
            raise sending._Unanswered("no time left")
        self._set_timeout(timeout)
        targets = self.route[self.position]
        while len(self.partial) < len(targets):  # kept across a timeout
            conn = targets[len(self.partial)]
            try:
                self.partial.append(conn.read_response(disconnect_on_error=False))
            except redis.TimeoutError as e:
                raise sending._Unanswered(str(e)) from e
            except redis.ResponseError as e:
                self.partial.append(e)
        answers, self.partial = self.partial, []
        self.position += 1
        refused = [a for a in answers if isinstance(a, Exception)]
        return refused[0] if refused else answers[-1]

    def _set_timeout(self, timeout: float) -> None:
        if timeout == self.timeout:
            return
        for conn in self.conns.values():
            sock = getattr(conn, "_sock", None)
            if sock is not None:
                sock.settimeout(max(timeout, 0.001))
        self.timeout = timeout


def _stale(conn: Any) -> bool:
    """Whether Redis closed the idle connection (or sent what nobody asked)."""
    try:
        return conn.can_read(0)
    except (redis.ConnectionError, OSError, ValueError):
        return True
