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


# The version of a page rendered while Redis could not say: no epoch vouches
# for it, so the page resyncs as soon as it subscribes.
UNKNOWN = 0


def current_version() -> int:
    """A version no earlier change exceeds, read as a page is rendered.

    The gateways' baseline (``versions.LOOKUP_SCRIPT``: at least Redis's "now"),
    so every later change gets a greater version and the page, subscribing with
    it, hears (as a resync) of a save made while it loaded or was offline.
    Redis unreachable: ``UNKNOWN`` (0), older than every epoch, so the page
    refetches once it subscribes rather than miss a change made meanwhile.
    """
    try:
        return versions.lookup(publisher.get_client(), []).baseline
    except (redis.RedisError, ValueError) as e:
        logger.debug("no version for the page: %s", e)
        return UNKNOWN
