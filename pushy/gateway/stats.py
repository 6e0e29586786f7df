"""Counters and gauges of one gateway process, as JSON (/stats) and Prometheus text.

Plain integers on one object: the gateway is one thread of greenlets, so no
locks are needed, and counting costs an attribute increment on the hot path.
prometheus_client is not used: the handful of metrics here do not justify a
dependency and its registry (see docs/decisions.md).
"""

from __future__ import annotations

import bisect
import itertools
import time
from typing import Any

from pushy.updates import REASONS

COUNTERS = {
    "connections_total": "WebSocket connections accepted",
    "handshakes_refused": "Upgrade requests refused (a 4xx, or a 503 at a limit)",
    "refused_max_connections": "Handshakes refused (503) at MAX_CONNECTIONS",
    "refused_per_client": "Handshakes refused (503) at MAX_CONNECTIONS_PER_CLIENT",
    "accept_pauses": "Times accepting paused for lack of file descriptors",
    "updates_in": "Updates received from Redis",
    "updates_invalid": "Redis messages that were not valid updates (dropped)",
    "updates_failed": "Updates skipped after an unexpected error in the gateway",
    "frames_out": "Frames written to clients",
    "messages_in": "Messages received from clients",
    "slow_closes": "Clients closed for not keeping up (both rules below)",
    "slow_closes_stalled": "Clients dropped: they took no byte for WRITE_TIMEOUT",
    "slow_closes_backlog": "Clients closed with 4008: their backlog stayed past "
    "the send queue bound while growing",
    "ping_timeouts": "Clients closed for not answering a ping",
    "errors": "Error replies and protocol-error closes sent to clients",
    "redis_reconnects": "Times the Redis subscription was re-established",
    "redis_ping_timeouts": "Redis subscriptions dropped for not answering a PING",
    "listener_restarts": "Times the Redis listener restarted after an error of its own",
    "shard_batches": "Batches of SSUBSCRIBE/SUNSUBSCRIBE calls sent (Redis Cluster: "
    "channels follow the clients' subscriptions)",
    "cluster_map_changes": "Times the gateway followed a change of the Redis "
    "Cluster's slot map (a failover, slots migrated)",
    "cluster_channels_moved": "Channels the gateway subscribed on another master "
    "after a change of the Redis Cluster's slot map",
    "session_loads": "Sessions read to learn a connection's user",
    "authorizations": "Authorization questions answered by the site (view runs)",
    "questions_refused": "Authorization questions refused (error busy): too many "
    "waiting for the connection or client address, or not started within "
    "AUTHORIZATION_TIMEOUT",
    "questions_dropped": "Authorization questions dropped unasked: every connection "
    "waiting for them had closed",
    "questions_timed_out": "Authorization questions that ran past "
    "AUTHORIZATION_TIMEOUT (error timeout); each kept its thread until it returned",
    "updates_withheld": "Updates not sent to a subscriber who may not see them",
    "updates_hidden": "Hidden messages sent: an update made an object invisible "
    "to a subscriber who saw it",
    "revocations": "Subscriptions ended because their user may no longer GET them",
    "replays": "Subscribes with a version answered with the updates missed, "
    "from the history (no resync)",
    "updates_replayed": "Updates sent from the history to returning clients",
    "version_resyncs": "Subscribes with a version answered with a resync (the URL "
    "changed, and the history did not cover the gap or is off)",
    "loop_stalls": "Times the event loop woke 50 ms or more late (nothing was sent)",
    "gc_full_collections": "Full (generation 2) garbage collections",
}


HISTOGRAMS = {
    "question_wait_seconds": "Seconds authorization questions (session reads, view "
    "runs) waited for a pool thread",
    "question_run_seconds": "Seconds authorization questions ran in a pool thread",
    "update_arrival_seconds": "Seconds from an update's publish (its commit, on the "
    "publisher's clock) to its arrival at this gateway",
    "update_delivery_seconds": "Seconds from an update's publish (its commit, on the "
    "publisher's clock) until this gateway had written it to its subscribers' "
    "sockets (those not already waiting on a slow client)",
}
# Upper bounds of the histograms' buckets, in seconds (a view runs in about a
# millisecond; AUTHORIZATION_TIMEOUT is 5 s by default; an update takes a few
# milliseconds from commit to socket).
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Histogram:
    """Observations counted per bucket, as Prometheus histograms are."""

    __slots__ = ("counts", "count", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # the last: above every bound
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, value)] += 1
        self.count += 1
        self.sum += value

    def snapshot(self) -> dict:
        """Count, sum and cumulative buckets (``le``: at most that many seconds)."""
        bounds = [f"{bound:g}" for bound in BUCKETS] + ["+Inf"]
        cumulative = itertools.accumulate(self.counts)
        return {
            "count": self.count,
            "sum": round(self.sum, 6),
            "buckets": dict(zip(bounds, cumulative, strict=True)),
        }


class Stats:
    """The gateway's numbers; gauges are read from the hub and listener on demand."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        for name in COUNTERS:
            setattr(self, name, 0)
        for name in HISTOGRAMS:
            setattr(self, name, Histogram())

    def arrived(self, published: float | None) -> None:
        """An update published at ``published`` (None: unknown) reached this
        gateway: its lag so far counts."""
        if published is not None:
            self.update_arrival_seconds.observe(seconds_since(published))

    def delivered(self, published: float | None) -> None:
        """An update published at ``published`` (None: unknown) is with the
        kernel for its subscribers: its lag counts, once for those a dispatch
        wrote (server.Gateway.dispatch), once for each held one (gate.py)."""
        if published is not None:
            self.update_delivery_seconds.observe(seconds_since(published))

    def snapshot(self, connections: int, subscriptions: int, redis_live: bool) -> dict:
        counters = {name: getattr(self, name) for name in COUNTERS}
        histograms = {name: getattr(self, name).snapshot() for name in HISTOGRAMS}
        return {
            "connections": connections,
            "subscriptions": subscriptions,
            "redis_subscribed": redis_live,
            "uptime": round(time.monotonic() - self.started, 3),
            **counters,
            **histograms,
        }


def prometheus_text(snapshot: dict[str, Any]) -> str:
    """The snapshot in the Prometheus text exposition format (version 0.0.4)."""
    lines = []
    gauges = {
        "connections": "Open WebSocket connections",
        "subscriptions": "Active (connection, URL) subscriptions",
        "redis_subscribed": "1 while the Redis subscription is live",
        "uptime": "Seconds since the gateway started",
        "max_connections": "MAX_CONNECTIONS of this process",
        "head_bytes_reading": "Bytes held by request heads still being read",
        "presence_urls": "URLs some connection here is present on",
        "presence_members": "(connection, URL) presences here",
        "loop_lag_max_seconds": "Longest the event loop was late in the last minute",
        "gc_pause_max_seconds": "Longest garbage collection in the last minute",
        "questions_waiting": "Authorization questions waiting for a pool thread",
        "questions_running": "Pool threads running an authorization question",
        "questions_overrunning": "Pool threads still running a question past "
        "AUTHORIZATION_TIMEOUT",
        "questions_stuck": "Pool threads running one question for 12 "
        "AUTHORIZATION_TIMEOUTs or more",
    }
    for name, help_text in gauges.items():
        if snapshot.get(name) is None:
            continue  # A limit that is not set.
        lines += _metric(f"pushy_gateway_{name}", "gauge", help_text, snapshot[name])
    for name, help_text in COUNTERS.items():
        lines += _metric(f"pushy_gateway_{name}", "counter", help_text, snapshot[name])
    for name, help_text in HISTOGRAMS.items():
        if name in snapshot:
            lines += _histogram(f"pushy_gateway_{name}", help_text, snapshot[name])
    lines += _refused(snapshot.get("site_updates_refused"))
    return "\n".join(lines) + "\n"


def _refused(counts: dict[str, int] | None) -> list[str]:
    """Refusals of all publishers (read from Redis): the same on every gateway.

    Every reason is written, 0 included, so dashboards find the series before
    the first refusal; nothing while Redis cannot say (None).
    """
    if counts is None:
        return []
    counts = {**dict.fromkeys(REASONS, 0), **counts}
    name = "pushy_site_updates_refused_total"
    lines = [
        f"# HELP {name} Updates refused at publish by every publisher of the site, "
        "by reason (sent without data, or as a resync); the same on every gateway.",
        f"# TYPE {name} counter",
    ]
    lines += [f'{name}{{reason="{r}"}} {n}' for r, n in sorted(counts.items())]
    return lines


def _histogram(name: str, help_text: str, values: dict) -> list[str]:
    lines = [f"# HELP {name} {help_text}.", f"# TYPE {name} histogram"]
    lines += [f'{name}_bucket{{le="{le}"}} {n}' for le, n in values["buckets"].items()]
    return lines + [f"{name}_sum {values['sum']}", f"{name}_count {values['count']}"]


def _metric(name: str, kind: str, help_text: str, value: Any) -> list[str]:
    if kind == "counter" and not name.endswith("_total"):
        name += "_total"
    return [f"# HELP {name} {help_text}.", f"# TYPE {name} {kind}", f"{name} {+value}"]


def seconds_since(published: float) -> float:
    """Seconds from ``published`` (another host's clock) to now, for the lag
    histograms; never below 0, which only a clock ahead of this host's gives."""
    return max(0.0, time.time() - published)
