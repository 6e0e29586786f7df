"""Redis Cluster mode (issue 24): where updates, versions and control messages live.

    REDIS_URL = "redis+cluster://[[user]:password@]host:port[,host:port...]"

(``rediss+cluster://`` for TLS). Sharded pub/sub (``SPUBLISH``/``SSUBSCRIBE``,
Redis 7) keeps each message on the master owning its channel's slot, so the
traffic is spread by spreading the slots: an object URL falls in one of
``BUCKETS`` buckets (CRC32 of the URL), each with a hash tag searched to sit
mid-way in its twelfth of the slots. A bucket's tag names its version book, its
senders' keys and its channel per model, so the publish script's keys and its
``SPUBLISH`` share one slot, as a cluster requires. A collection's members
spread over the buckets: its version is the largest in any book. Control
channels (resync requests, explain) are bucket 0's.

docs/decisions.md, "Redis Cluster: 12 buckets by object URL, a connection per
master". Imported by the publisher and the gateway only in cluster mode.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import redis
from redis.cluster import ClusterNode
from redis.crc import key_slot
from redis.exceptions import RedisClusterException

from pushy import conf, versions
from pushy.redis_clients import CLUSTER_SCHEMES, split_hosts_url
from pushy.versions import Snapshot

BUCKETS = 12
SLOTS = 16384
# Sharded pub/sub came with Redis 7.
MIN_VERSION = (7, 0)


def _sharded(script: str) -> str:
    sharded = script.replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'")
    assert sharded != script
    return sharded


def _counted(script: str) -> str:
    """The publish script counting its runs in its bucket's ``load_key()``
    (KEYS[3]), first, whatever the rest does: ``pushy_cluster_balance`` places
    the buckets' slots by these counts (pushy/cluster_balance.py)."""
    return "redis.call('INCR', KEYS[3])\n" + script


PUBLISH_SCRIPT = _counted(_sharded(versions.PUBLISH_SCRIPT))
LOSE_SCRIPT = _sharded(versions.LOSE_SCRIPT)
PUBLISH_SHA = hashlib.sha1(PUBLISH_SCRIPT.encode()).hexdigest()


def is_cluster_url(url: object) -> bool:
    return isinstance(url, str) and url.startswith(CLUSTER_SCHEMES)


def enabled() -> bool:
    """Whether ``REDIS_URL`` names a cluster."""
    return is_cluster_url(conf.get("REDIS_URL"))


@dataclasses.dataclass(frozen=True)
class ClusterURL:
    hosts: list[tuple[str, int]]
    username: str | None = None
    password: str | None = None
    ssl: bool = False


def parse_cluster_url(url: str) -> ClusterURL:
    """Split a ``redis+cluster://`` URL; ValueError says what is wrong."""
    hosts, path, username, password, ssl = split_hosts_url(
        url, CLUSTER_SCHEMES, "cluster"
    )
    if path.split("?")[0].strip("/") not in ("", "0"):
        raise ValueError("a cluster has only database 0")
    return ClusterURL(hosts, username, password, ssl)


@contextlib.contextmanager
def redis_errors() -> Iterator[None]:
    """redis-py's cluster errors that are no ``RedisError`` (no node reachable,
    a slot not covered) raised as ``ConnectionError``, which every caller of
    pushy's handles as Redis being away."""
    try:
        yield
    except RedisClusterException as e:
        raise redis.ConnectionError(str(e)) from e


def client(url: str, **options: Any) -> redis.RedisCluster:
    """A redis-py cluster client; ``options`` are each node's connection options.

    It reads the slot map at once: ConnectionError if no node answers.
    """
    parsed = parse_cluster_url(url)
    with redis_errors():
        return redis.RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in parsed.hosts],
            username=parsed.username,
            password=parsed.password,
            ssl=parsed.ssl,
            **options,
        )


def node_options(url: str) -> dict[str, Any]:
    """Connection options for one node of the cluster ``url`` (credentials, TLS)."""
    parsed = parse_cluster_url(url)
    return {"username": parsed.username, "password": parsed.password, "ssl": parsed.ssl}


def problem(cluster: redis.RedisCluster) -> str | None:
    """Why pushy cannot run on this cluster (None: it can)."""
    for node in cluster.get_primaries():
        info = cluster.info("server", target_nodes=node)
        version = tuple(int(p) for p in str(info["redis_version"]).split(".")[:2])
        if version < MIN_VERSION:
            return f"Redis {info['redis_version']} at {node.name} lacks SPUBLISH (7.0)"
    return None


# The layout -------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def tags(prefix: str) -> tuple[str, ...]:
    """One hash tag per bucket, its slot in the middle half of its twelfth."""
    span = SLOTS / BUCKETS
    found = []
    for bucket in range(BUCKETS):
        low, high = span * (bucket + 0.25), span * (bucket + 0.75)
        k = 0
        while not low <= key_slot(f"{prefix}:{k}".encode()) < high:
            k += 1
        found.append("{" + f"{prefix}:{k}" + "}")
    return tuple(found)


def bucket(url: str) -> int:
    return zlib.crc32(url.encode()) % BUCKETS


def tag(number: int) -> str:
    return tags(conf.get("CHANNEL_PREFIX"))[number]


def book_key(number: int) -> str:
    return tag(number) + ":version:book"


def sender_key(number: int, sender: str) -> str:
    return tag(number) + ":version:sender:" + sender


def load_key(number: int) -> str:
    """How many publish scripts ran in bucket ``number`` (a counter in its slot)."""
    return tag(number) + ":load"


def update_channel(number: int, label: str) -> str:
    """Where a model's updates of one bucket are published."""
    return tag(number) + conf.get("CHANNEL_PREFIX") + label


def channel_of(update: Any) -> str:
    """Where ``update`` is published: its model's channel in its URL's bucket."""
    return update_channel(bucket(update.url), update.model)


def control_channel(suffix: str) -> str:
    """A control channel (``channels.RESYNC_SUFFIX``...): bucket 0's slot."""
    return tag(0) + conf.get("CHANNEL_PREFIX") + suffix


def channels(labels: Sequence[str]) -> list[str]:
    """Every channel a gateway subscribes to: each model in each bucket."""
    return [update_channel(n, label) for label in labels for n in range(BUCKETS)]


# Versions -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ClusterSnapshot(Snapshot):
    """A merged snapshot, with each book's own (a horizon per bucket needs them)."""

    books: tuple[Snapshot, ...] = ()

    def with_versions(self, other: Snapshot) -> Snapshot:
        books = getattr(other, "books", ())
        merged = super().with_versions(other)
        return dataclasses.replace(
            merged,
            books=tuple(
                a.with_versions(b) for a, b in zip(self.books, books, strict=True)
            ),
        )

    def changed_in_a_book(self, url: str, horizons: Sequence[int], ttl: float) -> bool:
        """Whether ``url`` may have changed in any book after its bucket's horizon."""
        return any(
            book.changed_since(url, horizon, ttl)
            for book, horizon in zip(self.books, horizons, strict=True)
        )


def lookup(
    cluster: redis.RedisCluster,
    urls: list[str],
    horizons: Sequence[int | None] | None = None,
) -> Snapshot:
    """The versions of ``urls`` across every bucket's book, as one snapshot.

    An object URL is in its bucket's book, a collection in any: each URL's
    version is the largest found; the floor, baseline and clock the largest
    (a floor moved in any book is below the merged one). Every book's
    ``:last`` is then raised to the baseline, so that no later update, in
    whichever book, gets a version a client holding the baseline has seen.
    """
    with redis_errors():
        return _lookup(cluster, urls, horizons or [None] * BUCKETS)


def _lookup(
    cluster: redis.RedisCluster, urls: list[str], horizons: Sequence[int | None]
) -> Snapshot:
    pipe = cluster.pipeline(transaction=False)
    for number in range(BUCKETS):
        args = versions.lookup_args(urls, horizons[number])
        pipe.execute_command("EVAL", versions.LOOKUP_SCRIPT, 1, book_key(number), *args)
    snapshots = [Snapshot.from_reply(urls, reply) for reply in pipe.execute()]
    merged = ClusterSnapshot(
        books=tuple(snapshots),
        baseline=max(s.baseline for s in snapshots),
        floor=max(s.floor for s in snapshots),
        now=max(s.now for s in snapshots),
        versions={url: _largest(s.versions[url] for s in snapshots) for url in urls},
    )
    pipe = cluster.pipeline(transaction=False)
    for number in range(BUCKETS):
        pipe.zadd(book_key(number), {":last": merged.baseline}, gt=True)
    pipe.execute()
    return merged


def _largest(found: Any) -> int | None:
    return max((v for v in found if v is not None), default=None)


def lose(cluster: redis.RedisCluster, channel: str = "", body: str = "") -> int:
    """A new epoch in every book, then the resync request (bucket 0's book
    publishes it, last); the largest floor in force."""
    with redis_errors():
        return _lose(cluster, channel, body)


def _lose(cluster: redis.RedisCluster, channel: str, body: str) -> int:
    pipe = cluster.pipeline(transaction=False)
    for number in range(1, BUCKETS):
        pipe.execute_command(
            "EVAL", LOSE_SCRIPT, 1, book_key(number), *versions.lose_args()
        )
    floors = [int(f) for f in pipe.execute()]
    args = versions.lose_args(None, channel, body)
    floors.append(int(cluster.eval(LOSE_SCRIPT, 1, book_key(0), *args)))
    return max(floors)


# The publisher's commands ----------------------------------------------------------


def publish_command(update: Any, ttl: int, sender: str, seq: str, body: bytes) -> tuple:
    """The sender's EVALSHA of PUBLISH_SCRIPT for ``update`` in its bucket."""
    number = bucket(update.url)
    args = versions.publish_args(
        ttl, update_channel(number, update.model), body, update.url,
        update.collection, seq,
    )  # fmt: skip
    return ("EVALSHA", PUBLISH_SHA, 3, *_keys(number, sender), *args)


def move_command(ttl: int, sender: str, url: str, collection: str | None) -> tuple:
    """Moves the versions of ``url`` (and its collection) without publishing."""
    number = bucket(url)
    args = versions.publish_args(ttl, "", b"", url, collection, "")
    return ("EVALSHA", PUBLISH_SHA, 3, *_keys(number, sender), *args)


def _keys(number: int, sender: str) -> tuple[str, str, str]:
    """PUBLISH_SCRIPT's KEYS in bucket ``number``: book, sender, load counter."""
    return (book_key(number), sender_key(number, sender), load_key(number))


def command_slot(command: tuple) -> int | None:
    """The slot a sender's command must run on (None: every master's, set-up)."""
    name = command[0]
    if name in ("EVALSHA", "EVAL"):
        key = command[3]
    elif name in ("SPUBLISH", "HINCRBY"):
        key = command[1]
    else:
        return None
    return key_slot(key.encode() if isinstance(key, str) else key)
