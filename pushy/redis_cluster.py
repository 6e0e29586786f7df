"""Redis Cluster mode (issue 24): where updates, versions and control messages live.

    REDIS_URL = "redis+cluster://[[user]:password@]host:port[,host:port...]"

(``rediss+cluster://`` for TLS). Sharded pub/sub (``SPUBLISH``/``SSUBSCRIBE``,
Redis 7) keeps each message on the master owning its channel's slot, so the
traffic is spread by spreading the slots: an object URL falls in one of
``BUCKETS`` buckets (CRC32 of the URL), each with a hash tag searched to sit
mid-way in its twelfth of the slots. A bucket's tag names its version book, its
senders' keys and its channels: an object's, and a collection's for its members
in this bucket. So the publish script's keys and its ``SPUBLISH``es share one
slot, as a cluster requires, and a gateway subscribes to the objects and lists
its clients follow only (``pushy.gateway.interest``). A collection's members
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
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import redis
from redis.cluster import ClusterNode
from redis.crc import key_slot
from redis.exceptions import RedisClusterException

from pushy import conf, versions
from pushy.object_urls import without_query
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


# The collection channel's ARGV index: after versions.publish_args' 10.
COLLECTION_ARG = 11


def _to_both(script: str) -> str:
    """The publish script sending to the object's channel (ARGV[2]) and, when
    the argument after ``versions.publish_args``' names one, to its
    collection's (both in the object's slot)."""
    one = "return {redis.call('SPUBLISH', ARGV[2], body), v}"
    both = (
        "local heard = redis.call('SPUBLISH', ARGV[2], body)\n"
        f"if ARGV[{COLLECTION_ARG}] ~= '' then\n"
        f"  heard = heard + redis.call('SPUBLISH', ARGV[{COLLECTION_ARG}], body)\n"
        "end\n"
        "return {heard, v}"
    )
    assert one in script
    return script.replace(one, both)


def _counted(script: str) -> str:
    """The publish script counting its runs in its bucket's ``load_key()``
    (KEYS[4]: after the book, the sender's and the history's), first,
    whatever the rest does: ``pushy_cluster_balance`` places the buckets'
    slots by these counts (pushy/cluster_balance.py)."""
    return "redis.call('INCR', KEYS[4])\n" + script


PUBLISH_SCRIPT = _counted(_to_both(_sharded(versions.PUBLISH_SCRIPT)))
# Unversioned updates (``sending.PLAIN``...): the same two channels (KEYS but
# the last), and the bucket's load counter (the last).
PLAIN_SCRIPT = (
    "redis.call('INCR', KEYS[#KEYS])\n"
    "local heard = redis.call('SPUBLISH', KEYS[1], ARGV[1])\n"
    "if #KEYS > 2 then heard = heard + redis.call('SPUBLISH', KEYS[2], ARGV[1]) end\n"
    "return heard"
)
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
def tags(prefix: str, count: int = BUCKETS) -> tuple[str, ...]:
    """One hash tag per bucket of ``count``, its slot in the middle half of
    its ``count``-th of the slots (the bench measures other counts with it)."""
    span = SLOTS / count
    found = []
    for number in range(count):
        low, high = span * (number + 0.25), span * (number + 0.75)
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


def history_key(number: int) -> str:
    return tag(number) + ":version:history"


def sender_key(number: int, sender: str) -> str:
    return tag(number) + ":version:sender:" + sender


def load_key(number: int) -> str:
    """How many publish scripts ran in bucket ``number`` (a counter in its slot)."""
    return tag(number) + ":load"


def object_channel(url: str) -> str:
    """Where the updates of the object ``url`` are published (its bucket's slot)."""
    return tag(bucket(url)) + conf.get("CHANNEL_PREFIX") + "o:" + url


def collection_channel(number: int, collection: str) -> str:
    """Where the updates of the members of ``collection`` in bucket ``number``
    are published: a collection subscriber needs it in every bucket."""
    return tag(number) + conf.get("CHANNEL_PREFIX") + "c:" + collection


def channels_of(update: Any) -> list[str]:
    """Where ``update`` is published: its object's channel, then its
    collection's in the same bucket (the gateway drops the second copy)."""
    found = [object_channel(update.url)]
    if update.collection:
        found.append(collection_channel(bucket(update.url), update.collection))
    return found


def interest(url: str, object_only: bool = False) -> list[str]:
    """The channels a gateway needs for a subscriber of ``url``: the object's,
    and those of the collection it may be (which a gateway cannot tell; a
    filtered list's is its collection's), one per bucket. ``object_only``: the
    subscriber said ``url`` is one object (docs/protocol.md, ``"object"``):
    its channel alone (a URL with a query string is never one object)."""
    base = without_query(url)
    if object_only and base == url:
        return [object_channel(url)]
    found = [collection_channel(n, base) for n in range(BUCKETS)]
    if base == url:
        found.append(object_channel(url))
    return found


def control_channel(suffix: str) -> str:
    """A control channel (``channels.RESYNC_SUFFIX``...): bucket 0's slot."""
    return tag(0) + conf.get("CHANNEL_PREFIX") + suffix


def anchor_channel(owns: Callable[[int], bool]) -> str:
    """A channel never published, in a slot ``owns`` says yes to: what a
    master's subscription holds when no client needs any of its channels."""
    prefix = conf.get("CHANNEL_PREFIX")
    k = 0
    while not owns(key_slot(f"{{{prefix}:anchor:{k}}}".encode())):
        k += 1
        if k > 100 * SLOTS:
            raise ValueError("no slot owned")
    return f"{{{prefix}:anchor:{k}}}"


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
        baseline = merged.baseline
        pipe.zadd(book_key(number), {":last": baseline, ":looked": baseline}, gt=True)
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


def replay(cluster: redis.RedisCluster, url: str, seen: int) -> list[bytes] | None:
    """The messages about ``url`` after ``seen`` from every bucket's history,
    in version order; None unless every book's history vouches for the gap
    (an object's own messages are in its bucket, its collection's members'
    in any)."""
    with redis_errors():
        pipe = cluster.pipeline(transaction=False)
        for number in range(BUCKETS):
            keys = (book_key(number), history_key(number))
            args = versions.replay_args(url, seen)
            pipe.execute_command("EVAL", versions.REPLAY_SCRIPT, 2, *keys, *args)
        replies = pipe.execute()
    if any(not reply or int(reply[0]) != 1 for reply in replies):
        return None
    found = [body for reply in replies for body in reply[1:]]
    return sorted(found, key=versions.version_of)


# The publisher's commands ----------------------------------------------------------


def publish_command(update: Any, ttl: int, sender: str, seq: str, body: bytes) -> tuple:
    """The sender's EVALSHA of PUBLISH_SCRIPT for ``update`` in its bucket."""
    number = bucket(update.url)
    channel, *collection = channels_of(update)
    args = versions.publish_args(ttl, channel, body, update.url, update.collection, seq)
    keys = _keys(number, sender)
    return ("EVALSHA", PUBLISH_SHA, len(keys), *keys, *args, *(collection or [""]))


def move_command(ttl: int, sender: str, url: str, collection: str | None) -> tuple:
    """Moves the versions of ``url`` (and its collection) without publishing."""
    number = bucket(url)
    args = versions.publish_args(ttl, "", b"", url, collection, "")
    keys = _keys(number, sender)
    return ("EVALSHA", PUBLISH_SHA, len(keys), *keys, *args)


def plain_command(update: Any, body: bytes) -> tuple:
    """An unversioned update's publish, to the same channels as a versioned one."""
    keys = (*channels_of(update), load_key(bucket(update.url)))
    return ("EVAL", PLAIN_SCRIPT, len(keys), *keys, body)


def _keys(number: int, sender: str) -> tuple[str, ...]:
    """PUBLISH_SCRIPT's KEYS in bucket ``number``: book, sender, history, load."""
    return (
        book_key(number), sender_key(number, sender), history_key(number),
        load_key(number),
    )  # fmt: skip


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
