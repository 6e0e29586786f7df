"""The capture process: one active at a time, LISTENing, publishing what changed.

``manage.py pushy_capture`` runs ``Capture.run()``. Each process opens its own
PostgreSQL connection and waits for a session-level advisory lock on it; the one
that holds it LISTENs to the triggers' channel, loads the changed objects in
batches, builds each update as the signals would and publishes it. The lock lives
as long as that connection: when the process dies (even by SIGKILL) PostgreSQL
ends its session and frees the lock, and a standby takes over within
``LOCK_POLL`` seconds.

NOTIFY is not durable: what changed while no process listened is lost. So a
process that becomes active first asks every gateway for a resync (a control
message on Redis, see docs/protocol.md), and so does one that could not publish
something (Redis down, an update it could not build), once Redis takes it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import psycopg
from django.apps import apps
from django.db import Error as DatabaseError
from django.db import connections, models

from pushy import publisher
from pushy.capture import capture_alias, captured_labels
from pushy.capture.changes import collect
from pushy.capture.triggers import installed_tables, notify_channel
from pushy.messages import DELETE, Update, build_update, resync_channel

logger = logging.getLogger(__name__)

# Seconds between a standby's attempts to take the lock.
LOCK_POLL = 1.0
# Seconds one wait for notifications lasts (how soon a stop is noticed).
POLL_TIMEOUT = 1.0
# After a notification, keep gathering while more arrive within this many
# seconds (a big transaction's notifications come back to back), up to
# MAX_GATHER notifications: they are coalesced together.
GATHER_IDLE = 0.005
MAX_GATHER = 200
# Objects loaded per query, and published per Redis pipeline.
BATCH_SIZE = 500
# An idle listener checks its connection this often (a dead peer sends nothing).
KEEPALIVE = 5.0
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 5.0


def lock_key(channel: str) -> int:
    """The advisory lock's key: one per NOTIFY channel (so per CHANNEL_PREFIX)."""
    digest = hashlib.blake2b(f"pushy.capture:{channel}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def publish_resync(labels: Iterable[str]) -> int:
    """Ask every gateway to tell its clients to resync; how many gateways got it."""
    body = json.dumps({"models": sorted(labels)}, separators=(",", ":"))
    try:
        return publisher.get_client().publish(resync_channel(), body)
    except Exception as e:  # redis errors, and whatever the client raises
        raise publisher.PublishError(f"resync: {e}") from e


class Capture:
    """One capture process (active or standing by); ``stop()`` from any thread."""

    def __init__(self, alias: str | None = None) -> None:
        self.alias = alias or capture_alias()
        self.channel = notify_channel()
        self.key = lock_key(self.channel)
        self.stopping = threading.Event()
        self.active = False
        # Labels whose pages must be told to resync once Redis takes it.
        self.resync_owed: set[str] = set()
        self._listen: Any = None  # the Django connection wrapper that LISTENs

    def stop(self) -> None:
        self.stopping.set()

    # Lifecycle -----------------------------------------------------------

    def run(self) -> None:
        """Capture until ``stop()``; survives database and Redis outages."""
        backoff = FIRST_BACKOFF
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                self._session()
            except (DatabaseError, psycopg.Error) as e:
                # Django wraps the ORM's errors; the LISTEN connection is used raw.
                self._lost(e, backoff)
            finally:
                self._close()
            if time.monotonic() - started > 10 * MAX_BACKOFF:
                backoff = FIRST_BACKOFF
            self.stopping.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)
        logger.info("pushy capture stopped")

    def _lost(self, error: Exception, backoff: float) -> None:
        state = "active" if self.active else "standing by"
        logger.warning(
            "pushy capture (%s) lost the database: %s; retrying in %.1fs",
            state,
            error,
            backoff,
        )

    def _close(self) -> None:
        self.active = False
        listen, self._listen = self._listen, None
        for wrapper in (listen, connections[self.alias]):
            if wrapper is None:
                continue
            try:
                wrapper.close()  # the LISTEN session's end frees the lock
            except (DatabaseError, psycopg.Error) as e:
                logger.debug("closing a broken connection: %s", e)

    def _session(self) -> None:
        """Connect, wait for the lock, then capture until stopped or lost."""
        self._listen = connections.create_connection(self.alias)
        self._listen.ensure_connection()
        conn = self._listen.connection
        conn.autocommit = True
        if not self._take_lock(conn):
            return
        conn.execute(f'LISTEN "{self.channel}"')
        self.active = True
        logger.info(
            "pushy capture active on %s (channel %s): %s",
            self.alias,
            self.channel,
            ", ".join(sorted(captured_labels())) or "no models",
        )
        self._warn_missing_triggers()
        # Changes made while no process listened were lost: resync their pages.
        self.resync_owed |= captured_labels()
        self._settle_resync()
        idle_since = time.monotonic()
        while not self.stopping.is_set():
            payloads = self._gather(conn)
            if payloads:
                self.handle(payloads)
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > KEEPALIVE:
                conn.execute("SELECT 1")
                idle_since = time.monotonic()
            self._settle_resync()

    def _warn_missing_triggers(self) -> None:
        """A captured model whose table has no triggers would stay silent."""
        installed = installed_tables(self.alias)
        for label in sorted(captured_labels()):
            table = apps.get_model(label)._meta.db_table
            if table not in installed:
                logger.warning(
                    "pushy capture: %s (table %s) has no capture triggers, so its "
                    "changes are not seen: run manage.py migrate or pushy_triggers",
                    label,
                    table,
                )

    def _take_lock(self, conn: Any) -> bool:
        announced = False
        while not self.stopping.is_set():
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", [self.key])
            if row.fetchone()[0]:
                return True
            if not announced:
                logger.info(
                    "pushy capture standing by: another process captures %s",
                    self.alias,
                )
                announced = True
            self.stopping.wait(LOCK_POLL)
        return False

    def _gather(self, conn: Any) -> list[str]:
        """The next notifications' payloads: [] after POLL_TIMEOUT without any."""
        first = [n.payload for n in conn.notifies(timeout=POLL_TIMEOUT, stop_after=1)]
        payloads = first
        while payloads and len(payloads) < MAX_GATHER:
            more = [
                n.payload
                for n in conn.notifies(
                    timeout=GATHER_IDLE, stop_after=MAX_GATHER - len(payloads)
                )
            ]
            if not more:
                break
            payloads += more
        return payloads

    # Changes -------------------------------------------------------------

    def handle(self, payloads: list[str]) -> None:
        """Publish the updates that ``payloads`` (trigger notifications) mean."""
        changes = collect(payloads, captured_labels())
        self.resync_owed |= changes.resync
        for label, by_event in changes.by_model().items():
            if label in self.resync_owed:
                continue  # Redis refused this batch already: its pages resync
            model = apps.get_model(label)
            for event, pks in by_event.items():
                for batch in chunks(pks, BATCH_SIZE):
                    if not self._publish(label, self._build(model, event, batch)):
                        break

    def _build(
        self, model: type[models.Model], event: str, pks: list[Any]
    ) -> list[Update]:
        if event == DELETE:
            instances = [model(pk=pk) for pk in pks]
        else:
            # Rows gone since (deleted by a later transaction) are skipped: their
            # delete follows.
            instances = list(model._base_manager.using(self.alias).filter(pk__in=pks))
        updates = []
        for instance in instances:
            try:
                update = build_update(instance, event)
            except Exception:
                label = model._meta.label_lower
                logger.exception(
                    "pushy capture could not build the %s of %s pk=%r; its pages "
                    "will be told to resync",
                    event,
                    label,
                    instance.pk,
                )
                self.resync_owed.add(label)
                continue
            # The row is gone: its data would be the model's defaults.
            updates.append(update.replace(data=None) if event == DELETE else update)
        return updates

    def _publish(self, label: str, updates: list[Update]) -> bool:
        """Publish; False (the model owes a resync) when that failed."""
        try:
            publisher.publish(updates)
            return True
        except Exception as e:
            logger.error(
                "pushy capture could not publish %s: %s; its pages will be told "
                "to resync",
                publisher.describe(updates),
                e,
            )
            self.resync_owed.add(label)
            return False

    def _settle_resync(self) -> None:
        if not self.resync_owed:
            return
        try:
            publish_resync(self.resync_owed)
        except publisher.PublishError as e:
            logger.debug("resync not published yet: %s", e)
            return
        logger.info("pushy capture asked for a resync of %s", sorted(self.resync_owed))
        self.resync_owed.clear()
