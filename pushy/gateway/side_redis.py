"""The gateway process's one Redis client for its side questions, made on first use.

Besides its subscription (pushy/gateway/listener.py, a connection of its own),
a gateway asks Redis a few things: versions (pushy/gateway/versions.py), the
answers to ``pushy_explain`` (pushy/gateway/explain.py) and the site-wide
refusal counts for /stats. They share one client (a pool of connections), made
when first needed, so a gateway that is never asked opens nothing.
"""

from __future__ import annotations

import redis

from pushy.redis_clients import client_from_url

# Connect and reply timeout of a side question: an answer later than this is of
# no use to the greenlet waiting for it.
TIMEOUT = 2.0

_clients: dict[str, redis.Redis] = {}


def side_client(url: str) -> redis.Redis:
    """The client for ``url`` (the gateway has one REDIS_URL), made on first use."""
    client = _clients.get(url)
    if client is None:
        client = _clients[url] = client_from_url(
            url, socket_connect_timeout=TIMEOUT, socket_timeout=TIMEOUT
        )
    return client
