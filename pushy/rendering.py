"""What a page rendered on the server tells pushy.js: the version it shows.

A page that subscribes with the version it was rendered at hears (as a resync)
of a change made while it loaded; the live admin's change form and
``{% pushy_live %}`` both use it.
"""

from __future__ import annotations

import logging

import redis

from pushy import publisher, versions

logger = logging.getLogger(__name__)


def current_version() -> int | None:
    """A version no earlier change exceeds, read as a page is rendered.

    The gateways' baseline (``versions.LOOKUP_SCRIPT``: at least Redis's "now"),
    so every later change gets a greater version and the page, subscribing with
    it, hears (as a resync) of a save made while it loaded or was offline.
    Redis unreachable: None, and the page subscribes without one.
    """
    try:
        client = publisher.get_client()
        reply = client.register_script(versions.LOOKUP_SCRIPT)(
            keys=[versions.book_key()], args=versions.lookup_args([])
        )
        return versions.Snapshot.from_reply([], reply).baseline
    except (redis.RedisError, ValueError) as e:
        logger.debug("no version for the page: %s", e)
        return None
