"""Redis clients made from a ``REDIS_URL``, for the publisher and the gateway.

Besides redis-py's own forms (``redis://``, ``rediss://`` for TLS, ``unix://``),
a URL may name a Redis Sentinel set, so a failover moves pushy to the new primary:

    redis+sentinel://[[user]:password@]host:26379[,host:26379...]/service_name[/db]

(``rediss+sentinel://`` talks TLS to the primary). The password, if any, is the
primary's; the sentinels are asked without one. ``redis+cluster://`` names a
Redis Cluster (``pushy.redis_cluster``).
"""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.sentinel import Sentinel

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
DEFAULT_SENTINEL_PORT = 26379


@dataclasses.dataclass(frozen=True)
class SentinelURL:
    hosts: list[tuple[str, int]]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    ssl: bool = False


def parse_sentinel_url(url: str) -> SentinelURL:
    """Split a ``redis+sentinel://`` URL; ValueError says what is wrong."""
    hosts, path, username, password, ssl = split_hosts_url(
        url, SENTINEL_SCHEMES, "sentinel", DEFAULT_SENTINEL_PORT
    )
    parts = [p for p in path.split("?")[0].split("/") if p]
    if not parts or len(parts) > 2:
        raise ValueError("the path must be /service_name or /service_name/db")
    db = parts[1] if len(parts) == 2 else "0"
    if not db.isdigit():
        raise ValueError(f"db {db!r} is not a number")
    return SentinelURL(hosts, parts[0], int(db), username, password, ssl)


def split_hosts_url(
    url: str, schemes: tuple[str, ...], what: str, default_port: int | None = None
) -> tuple[list[tuple[str, int]], str, str | None, str | None, bool]:
    """``scheme://[[user]:password@]host:port[,host:port...][/path]``: its
    hosts, path, username, password and whether it is TLS (``rediss+``).
    ``what`` names a host in errors; ValueError says what is wrong."""
    scheme, _, rest = url.partition("://")
    if scheme not in schemes:
        raise ValueError(f"not a {' or '.join(schemes)} URL")
    netloc, _, path = rest.partition("/")
    username = password = None
    if "@" in netloc:
        userinfo, _, netloc = netloc.rpartition("@")
        user, _, secret = userinfo.partition(":")
        username, password = unquote(user) or None, unquote(secret) or None
    hosts = [_host_port(item, what, default_port) for item in netloc.split(",") if item]
    if not hosts:
        raise ValueError(f"no {what} host")
    return hosts, path, username, password, scheme.startswith("rediss")


def _host_port(item: str, what: str, default_port: int | None) -> tuple[str, int]:
    if item.startswith("["):  # [IPv6]:port
        host, _, port = item[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = item.partition(":")
    if not port and default_port is not None:
        port = str(default_port)
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad {what} address {item!r} (host:port)")
    return host, int(port)


def client_from_url(url: str, **options: Any) -> redis.Redis:
    """A redis-py client for ``url``; ``options`` are connection options (timeouts)."""
    if url.startswith(CLUSTER_SCHEMES):
        from pushy import redis_cluster

        return redis_cluster.client(url, **options)
    if not url.startswith(SENTINEL_SCHEMES):
        return redis.Redis.from_url(url, **options)
    parsed = parse_sentinel_url(url)
    sentinel_options = {
        k: v for k, v in options.items() if k.startswith(("socket_", "retry"))
    }
    sentinel = Sentinel(parsed.hosts, sentinel_kwargs=sentinel_options, **options)
    return sentinel.master_for(
        parsed.service,
        db=parsed.db,
        username=parsed.username,
        password=parsed.password,
        ssl=parsed.ssl,
    )


def out_of_memory(error: object) -> bool:
    """Whether Redis refused a command for lack of memory (``OOM ...``).

    Redis 7 answers a script's refused command with the command's own error
    (``OutOfMemoryError`` in redis-py); Redis 6.2 wraps it as ``ERR Error
    running script ... -OOM command not allowed ...``.
    """
    if isinstance(error, redis.exceptions.OutOfMemoryError):
        return True
    return isinstance(error, redis.ResponseError) and "OOM command not allowed" in str(
        error
    )


def redacted(url: str) -> str:
    """``url`` without credentials or query, for log lines."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "?"
    if scheme in SENTINEL_SCHEMES + CLUSTER_SCHEMES:
        netloc, _, path = rest.partition("/")
        return f"{scheme}://{netloc.rpartition('@')[2]}/{path.split('?')[0]}"
    parts = urlsplit(url)
    if parts.hostname is None:
        return f"{parts.scheme}://{parts.path}"
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def publish(
    client: redis.Redis | redis.RedisCluster, channel: str, body: str | bytes
) -> Any:
    """PUBLISH, or SPUBLISH on a cluster (where gateways listen sharded); a
    pipeline's is queued (a cluster's ``ClusterPipeline`` is a RedisCluster)."""
    if isinstance(client, redis.RedisCluster):
        return client.spublish(channel, body)
    return client.publish(channel, body)
