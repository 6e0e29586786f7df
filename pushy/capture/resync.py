"""Asking for a resync when the capture may have missed changes.

A message to the connected clients is not enough: a page that is away (offline,
reconnecting, not yet opened) subscribes later with the version it held or was
rendered at, and the versions do not record a change nobody published, so it
would be told "unchanged". So the request is ``versions.LOSE_SCRIPT``: in one
step Redis starts a new version epoch (every version given out before says
nothing, and a page subscribing with one is resynced) and publishes the request
on the resync channel (every gateway tells its connected clients to resync).

What Redis does not take stays owed and is asked again (``Resyncs.settle``), at
most once per ``MIN_INTERVAL``: a failure that repeats (a model whose updates
cannot be built) must not resync every page on every batch. A Redis that
refuses the script's writes for now (a read-only replica after a failover, out
of memory) still takes a plain PUBLISH: the connected clients are told at once,
and the new epoch follows once Redis takes the script. A Redis that refuses
scripts outright (an ACL, a cluster node without the versions' slot) gets the
request alone, logged: its gateways cannot read versions either, so a page
subscribing there resyncs anyway.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

import redis

from pushy import publisher, versions
from pushy.channels import resync_channel, resync_request
from pushy.redis_clients import publish

logger = logging.getLogger(__name__)

# Seconds between two resync requests (those owed meanwhile wait, together).
MIN_INTERVAL = 1.0


def refuses_scripts(error: redis.ResponseError) -> bool:
    """Whether Redis will never run the script (as opposed to not now: OOM...)."""
    text = str(error)
    return (
        isinstance(error, redis.exceptions.NoPermissionError)
        or "unknown command" in text.lower()
        or text.startswith(("CROSSSLOT", "MOVED", "ASK"))
    )


def body(owed: Mapping[str, str]) -> str:
    """The request: the models, and why (each reason once, in first-owed order)."""
    return resync_request(owed, owed.values())


class Resyncs:
    """What the capture owes the pages: a resync request, and a new epoch."""

    def __init__(self) -> None:
        # Models whose pages must be told to resync: why.
        self.owed: dict[str, str] = {}
        # A new version epoch is owed (with the request, or after it).
        self.epoch = False
        self._last = float("-inf")
        self._failing = False  # the last attempt failed (logged once per stretch)

    def owe(self, owed: Mapping[str, str]) -> None:
        for label, reason in owed.items():
            self.owed.setdefault(label, reason)
        if owed:
            self.epoch = True

    def settle(self) -> None:
        """Ask Redis for what is owed; what it does not take stays owed."""
        if not (self.owed or self.epoch) or self._too_soon():
            return
        self._last = time.monotonic()
        try:
            client = publisher.get_client()
            if self.epoch:
                self._lose(client)
            else:
                self._publish(client)
        except Exception as e:  # redis errors, and whatever the client raises
            level = logging.DEBUG if self._failing else logging.WARNING
            logger.log(level, "pushy capture could not ask for a resync yet: %s", e)
            self._failing = True
        else:
            self._failing = False

    def _too_soon(self) -> bool:
        return time.monotonic() - self._last < MIN_INTERVAL

    def _lose(self, client: redis.Redis) -> None:
        channel = resync_channel() if self.owed else ""
        try:
            floor = versions.lose(client, None, channel, body(self.owed))
        except redis.ResponseError as e:
            self._refused(client, e)
            return
        self.epoch = False
        if self.owed:
            self._done(f"in a version epoch from {int(floor)}")
        else:
            logger.info(
                "pushy capture started the version epoch it owed (%d)", int(floor)
            )

    def _refused(self, client: redis.Redis, error: redis.ResponseError) -> None:
        """The script was refused: the request alone now; the epoch later, if ever."""
        if refuses_scripts(error):
            self.epoch = False
            logger.error(
                "Redis refused pushy's version script (%s): no new version epoch, "
                "so only the pages connected now are told to resync",
                error,
            )
            how = "without a version epoch"
        elif self.owed:  # a read-only replica, out of memory...: the epoch waits
            how = f"its version epoch once Redis takes it ({error})"
        else:
            raise error
        if self.owed:
            self._publish(client, how)

    def _publish(self, client: redis.Redis, how: str = "") -> None:
        publish(client, resync_channel(), body(self.owed))
        self._done(how)

    def _done(self, how: str) -> None:
        logger.info(
            "pushy capture asked for a resync of %s (%s)%s",
            sorted(self.owed),
            "; ".join(dict.fromkeys(self.owed.values())),
            f", {how}" if how else "",
        )
        self.owed.clear()
