"""The sender's side of Redis Cluster mode: its commands, routed per master.

``pushy.sending`` builds one pipeline per attempt and reads the answers in
order; on a cluster each command must go to the master owning its key's slot
(``pushy.redis_cluster``). ``ClusterLink`` keeps ``_Link``'s interface: it
writes each master's share of the pipeline on that master's connection, then
reads the answers back in the pipeline's order (each master answers its own
commands in order). Chosen once, when the sender is made.
"""

from __future__ import annotations

from typing import Any

import redis

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
    return ("SPUBLISH", redis_cluster.channel_of(update), update.encode())


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


class _Node:
    """One master's connection, and the set-up answers to skip on it."""

    __slots__ = ("conn", "skip", "fresh", "load")

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.skip = 0  # set-up answers not read yet
        self.fresh = True
        self.load = True


class ClusterLink:
    """``sending._Link`` over a connection per master (see the module)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.client: redis.RedisCluster | None = None
        self.nodes: dict[str, _Node] = {}
        self.route: list[_Node] = []  # the node of each written command
        self.position = 0  # answers read of the last write
        self.timeout = 0.0
        self.fresh = False
        self.load = True

    def drop(self) -> None:
        nodes, self.nodes = self.nodes, {}
        for node in nodes.values():
            node.conn.disconnect()

    def ready(self, timeout: float) -> None:
        """A connection to each master (new ones if any is gone or stale)."""
        client = sending.get_client()
        if client is not self.client:
            self.drop()
            self.client = client
        if self.nodes and not any(self._stale(n) for n in self.nodes.values()):
            self.fresh = False
            return
        self.drop()
        for primary in client.get_primaries():
            pool = client.get_redis_connection(primary).connection_pool
            conn = pool.make_connection()
            conn.socket_connect_timeout = conn.socket_timeout = max(timeout, 0.001)
            conn.connect()
            self.nodes[primary.name] = _Node(conn)
        self.timeout = max(timeout, 0.001)
        self.fresh = self.load = True

    @staticmethod
    def _stale(node: _Node) -> bool:
        try:
            return node.conn.can_read(0)
        except (redis.ConnectionError, OSError, ValueError):
            return True

    def setup(self) -> list[tuple]:
        """Each connection's set-up goes with its share (``write``): none here."""
        return []

    def write(self, commands: list[tuple], timeout: float) -> None:
        self._set_timeout(timeout)
        if self.load:  # every master loads the script before its next share
            self.load = False
            for node in self.nodes.values():
                node.load = True
        slots = self.client.nodes_manager
        shares: dict[str, list[tuple]] = {}
        self.route = []
        for item in commands:
            primary = slots.get_node_from_slot(redis_cluster.command_slot(item) or 0)
            shares.setdefault(primary.name, []).append(item)
            self.route.append(self.nodes[primary.name])
        self.position = 0
        for node_name, share in shares.items():
            node = self.nodes[node_name]
            setup = []
            if node.fresh:
                setup.append(("CLIENT", "SETNAME", self.name))
                node.fresh = False
            if node.load:
                setup.append(("SCRIPT", "LOAD", redis_cluster.PUBLISH_SCRIPT))
                node.load = False
            node.skip = len(setup)
            conn = node.conn
            conn.send_packed_command(
                conn.pack_commands(setup + share), check_health=False
            )

    def read(self, timeout: float) -> Any:
        if timeout <= 0:
            raise sending._Unanswered("no time left")
        self._set_timeout(timeout)
        node = self.route[self.position]
        try:
            while node.skip:
                self._skip(node)
            reply = node.conn.read_response(disconnect_on_error=False)
        except redis.TimeoutError as e:
            raise sending._Unanswered(str(e)) from e
        except redis.ResponseError as e:
            reply = e
        self.position += 1
        return reply

    @staticmethod
    def _skip(node: _Node) -> None:
        try:
            node.conn.read_response(disconnect_on_error=False)
        except redis.ResponseError:
            pass  # a refused SCRIPT LOAD: the script's NOSCRIPT will say so
        node.skip -= 1

    def _set_timeout(self, timeout: float) -> None:
        if timeout == self.timeout:
            return
        for node in self.nodes.values():
            sock = getattr(node.conn, "_sock", None)
            if sock is not None:
                sock.settimeout(max(timeout, 0.001))
        self.timeout = timeout
