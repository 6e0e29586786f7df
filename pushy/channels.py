"""Where things travel on Redis: the update channels and the control channels.

Every name starts with ``CHANNEL_PREFIX``, so the gateway's one pattern
subscription hears them all. See docs/protocol.md, "Redis side".
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from pushy import conf


def channel_name(label: str) -> str:
    return conf.get("CHANNEL_PREFIX") + label


# A control channel under the gateway's pattern; the ":" keeps it apart from every
# model channel (an "app_label.model_name" cannot hold one). docs/protocol.md.
RESYNC_SUFFIX = ":resync"


def resync_channel() -> str:
    """Where the capture process asks gateways to tell their clients to resync."""
    return _control(RESYNC_SUFFIX)


def _control(suffix: str) -> str:
    from pushy import redis_cluster  # a cluster's control channels have a slot

    if redis_cluster.enabled():
        return redis_cluster.control_channel(suffix)
    return conf.get("CHANNEL_PREFIX") + suffix


def resync_request(models: Iterable[str], reasons: Iterable[str]) -> str:
    """A resync request's body: the models, and why (each reason once, in order)."""
    reason = "; ".join(dict.fromkeys(reasons))
    return json.dumps(
        {"models": sorted(models), "reason": reason}, separators=(",", ":")
    )


EXPLAIN_SUFFIX = ":explain"


def explain_channel() -> str:
    """Where ``manage.py pushy_explain`` asks gateways for their subscriber counts."""
    return _control(EXPLAIN_SUFFIX)


def explain_reply_prefix() -> str:
    """The Redis list keys gateways answer explain requests in (keys, not channels)."""
    return conf.get("CHANNEL_PREFIX") + EXPLAIN_SUFFIX + ":reply:"


PRESENCE_SUFFIX = ":presence"


def presence_channel() -> str:
    """Where gateways tell each other that someone joined or left a URL."""
    return _presence()


def presence_key_prefix() -> str:
    """The Redis keys presence lives in (pushy/gateway/presence.py)."""
    return _presence() + ":"


def _presence() -> str:
    """On a Redis Cluster, one hash tag: presence's keys and its channel share
    a slot, so a join writes and tells in one MULTI (presence.py)."""
    from pushy import redis_cluster

    name = conf.get("CHANNEL_PREFIX") + PRESENCE_SUFFIX
    return "{" + name + "}" if redis_cluster.enabled() else name
