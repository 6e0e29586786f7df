"""A version book of a test's own on the private Redis, and the publish script
run on it as pushy's sender runs it (tests of versions' epochs and history)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

from pushy import versions

TTL = 86400


@contextmanager
def own_book(
    redis_url: str, settings: Any, name: str, **pushy_settings: Any
) -> Iterator[redis.Redis]:
    """A client, with ``CHANNEL_PREFIX`` made this test's own: the epochs it
    starts must not move the versions other tests (and their long-lived
    gateways) count on. Its book and history are deleted after."""
    settings.PUSHY_SETTINGS = {
        **settings.PUSHY_SETTINGS,
        "CHANNEL_PREFIX": f"{name}{uuid.uuid4().hex[:8]}_",
        **pushy_settings,
    }
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.delete(versions.book_key(), versions.history_key())
        client.close()


def publish(
    store: redis.Redis,
    url: str,
    *,
    body: bytes = b'{"a":1}',
    seq: str = "",
    sender: str = "s1",
    collection: str | None = None,
    channel: str = "c",
    ttl: int = TTL,
) -> tuple[int, int]:
    """Run the publish script: how many heard it, and the version it gave."""
    keys = [versions.book_key(), versions.sender_key(sender), versions.history_key()]
    args = versions.publish_args(ttl, channel, body, url, collection, seq)
    count, version = store.eval(versions.PUBLISH_SCRIPT, len(keys), *keys, *args)
    return int(count), int(version)
