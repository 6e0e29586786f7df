"""The gateway's answer to ``manage.py pushy_explain``: who here is subscribed to what.

The command PUBLISHes ``{"urls": [...], "reply": KEY}`` on the control channel
``explain_channel()`` (``CHANNEL_PREFIX + ":explain"``, under the pattern every
gateway already listens to, so no new server or port is needed). The listener
hands the body to ``Explainer.request``, which answers in its own greenlet: it
RPUSHes one JSON object to ``KEY``, a Redis list with a short expiry rather than a
channel, so that no gateway's pattern subscription ever sees the replies. Only
keys under ``explain_reply_prefix()`` are written to, whatever was published.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from typing import Any

import gevent
import redis

from pushy.channels import explain_reply_prefix
from pushy.gateway.side_redis import side_client
from pushy.logs import Throttled

logger = logging.getLogger(__name__)

# At most this many URLs are counted per request.
MAX_URLS = 16
# Seconds a reply list lives in Redis if the command never reads it.
REPLY_TTL = 30


def process_name() -> str:
    """How this gateway process is named in the answers: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def parse_request(body: bytes, prefix: str) -> tuple[str, list[str]]:
    """The reply key and the URLs of a request; ValueError if it is not one."""
    try:
        request = json.loads(body)
    except ValueError as e:
        raise ValueError(f"not JSON: {e}") from e
    if not isinstance(request, dict):
        raise ValueError("not a JSON object")
    reply, urls = request.get("reply"), request.get("urls")
    if not isinstance(reply, str) or not reply.startswith(prefix):
        raise ValueError(f"reply must be a key under {prefix!r}")
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise ValueError("urls must be a list of strings")
    return reply, urls[:MAX_URLS]


def counts(hub: Any, urls: list[str], name: str) -> dict[str, Any]:
    """This process's answer: its connections, and the subscribers of each URL."""
    return {
        "gateway": name,
        "connections": len(hub.connections),
        "subscriptions": hub.subscriptions,
        "urls": {url: len(hub.by_url.get(url, ())) for url in urls},
        # How fast updates reached its sockets, since it started (/metrics).
        "delivery": hub.stats.update_delivery_seconds.snapshot(),
    }


class Explainer:
    """Answers explain requests for one gateway process."""

    def __init__(self, hub: Any, redis_url: str) -> None:
        self.hub = hub
        self.redis_url = redis_url
        self.name = process_name()
        self._log = Throttled(logger)

    def request(self, body: bytes) -> None:
        """Called by the listener: never blocks it, never raises into it."""
        gevent.spawn(self._answer, body)

    def _answer(self, body: bytes) -> None:
        try:
            reply, urls = parse_request(body, explain_reply_prefix())
        except ValueError as e:
            self._log.log(logging.WARNING, "ignored an explain request: %s", e)
            return
        answer = json.dumps(counts(self.hub, urls, self.name))
        try:
            pipe = side_client(self.redis_url).pipeline(transaction=False)
            pipe.rpush(reply, answer)
            pipe.expire(reply, REPLY_TTL)
            pipe.execute()
        except redis.RedisError as e:
            self._log.log(logging.WARNING, "could not answer an explain request: %s", e)
