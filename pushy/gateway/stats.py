"""Counters and gauges of one gateway process, as JSON (/stats) and Prometheus text.

Plain integers on one object: the gateway is one thread of greenlets, so no
locks are needed, and counting costs an attribute increment on the hot path.
prometheus_client is not used: the handful of metrics here do not justify a
dependency and its registry (see docs/decisions.md).
"""

from __future__ import annotations

import time
from typing import Any

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
    "session_loads": "Sessions read to learn a connection's user",
    "authorizations": "Authorization questions answered by the site (view runs)",
    "updates_withheld": "Updates not sent to a subscriber who may not see them",
    "updates_hidden": "Hidden messages sent: an update made an object invisible "
    "to a subscriber who saw it",
    "revocations": "Subscriptions ended because their user may no longer GET them",
    "loop_stalls": "Times the event loop woke 50 ms or more late (nothing was sent)",
    "gc_full_collections": "Full (generation 2) garbage collections",
}


class Stats:
    """The gateway's numbers; gauges are read from the hub and listener on demand."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        for name in COUNTERS:
            setattr(self, name, 0)

    def snapshot(self, connections: int, subscriptions: int, redis_live: bool) -> dict:
        counters = {name: getattr(self, name) for name in COUNTERS}
        return {
            "connections": connections,
            "subscriptions": subscriptions,
            "redis_subscribed": redis_live,
            "uptime": round(time.monotonic() - self.started, 3),
            **counters,
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
        "loop_lag_max_seconds": "Longest the event loop was late in the last minute",
        "gc_pause_max_seconds": "Longest garbage collection in the last minute",
    }
    for name, help_text in gauges.items():
        if snapshot.get(name) is None:
            continue  # A limit that is not set.
        lines += _metric(f"pushy_gateway_{name}", "gauge", help_text, snapshot[name])
    for name, help_text in COUNTERS.items():
        lines += _metric(f"pushy_gateway_{name}", "counter", help_text, snapshot[name])
    lines += _refused(snapshot.get("site_updates_refused") or {})
    return "\n".join(lines) + "\n"


def _refused(counts: dict[str, int]) -> list[str]:
    """Refusals of all publishers (read from Redis): the same on every gateway."""
    if not counts:
        return []
    name = "pushy_site_updates_refused_total"
    lines = [
        f"# HELP {name} Updates refused at publish by every publisher of the site, "
        "by reason (sent without data, or as a resync); the same on every gateway.",
        f"# TYPE {name} counter",
    ]
    lines += [f'{name}{{reason="{r}"}} {n}' for r, n in sorted(counts.items())]
    return lines


def _metric(name: str, kind: str, help_text: str, value: Any) -> list[str]:
    if kind == "counter" and not name.endswith("_total"):
        name += "_total"
    return [f"# HELP {name} {help_text}.", f"# TYPE {name} {kind}", f"{name} {+value}"]
