"""The capture process: one active at a time, LISTENing, publishing what changed.

``manage.py pushy_capture`` runs ``Capture.run()``. Each process opens its own
PostgreSQL connection and waits for a session-level advisory lock on it; the one
that holds it LISTENs to the triggers' channel, loads the changed objects in
batches, builds each update as the signals would and publishes it. The lock lives
as long as that connection: when the process dies (even by SIGKILL) PostgreSQL
ends its session and frees the lock, and a standby takes over within
``LOCK_POLL`` seconds.

NOTIFY is not durable: what changed while no process listened is lost. So a
process that becomes active first asks for a resync, and so does one that could
not publish something (Redis down, an update it could not build, a truncate),
once Redis takes it. A resync request also starts a new version epoch
(pushy.capture.resync), so pages that are away or not yet open resync too.

A captured table renamed, dropped, without its triggers or no longer matching
its model is that model's problem, not a lost database: it is reported once,
the other models go on, and the model's pages resync once it is back
(pushy.capture.tables).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
from django.apps import apps
from django.core.exceptions import ValidationError
from django.db import DataError, ProgrammingError, connections, models
from django.db import Error as DatabaseError

from pushy import publisher
from pushy.capture.changes import collect
from pushy.capture.resync import Resyncs
from pushy.capture.tables import (
    Health,
    Problem,
    catalog_problems,
    probe,
    rows_problem,
)
from pushy.capture.triggers import captured_models, notify_channel
from pushy.captured import capture_alias, captured_labels
from pushy.messages import DELETE, Update
from pushy.updates import build_update, model_label

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
# Seconds between checks of the captured tables and their triggers.
CHECK_INTERVAL = 5.0
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 5.0


def lock_key(channel: str) -> int:
    """The advisory lock's key: one per NOTIFY channel (so per CHANNEL_PREFIX)."""
    digest = hashlib.blake2b(f"pushy.capture:{channel}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Capture:
    """One capture process (active or standing by); ``stop()`` from any thread."""

    def __init__(self, alias: str | None = None) -> None:
        self.alias = alias or capture_alias()
        self.channel = notify_channel()
        self.key = lock_key(self.channel)
        self.stopping = threading.Event()
        self.active = False
        # What the pages are owed once Redis takes it: a resync, a new epoch.
        self.resyncs = Resyncs()
        # Captured models that cannot be captured now (a table renamed...).
        self.health = Health()
        self._checked_at = 0.0
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
        # Changes made while no process listened were lost: resync their pages.
        self.resyncs.owe(dict.fromkeys(captured_labels(), "capture became active"))
        self._check_tables()
        self.resyncs.settle()
        idle_since = time.monotonic()
        while not self.stopping.is_set():
            payloads = self._gather(conn)
            if payloads:
                self.handle(payloads)
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > KEEPALIVE:
                conn.execute("SELECT 1")
                idle_since = time.monotonic()
            if time.monotonic() - self._checked_at >= CHECK_INTERVAL:
                self._check_tables()
            self.resyncs.settle()

    # Tables --------------------------------------------------------------

    def _check_tables(self) -> None:
        """Report the models that cannot be captured; resync those back again.

        Each is checked in the catalog (table, triggers); one already known
        broken is also probed (its rows load again?) before it counts as back.
        """
        self._checked_at = time.monotonic()
        models_ = captured_models(captured_labels())
        found = catalog_problems(self.alias, models_)
        for model in models_:
            label = model_label(model)
            problem = found.get(label)
            if problem is None and self.health.broken(label):
                problem = self._probe(model)
            if self.health.update(label, problem):
                self.resyncs.owe({label: "captured again"})

    def _probe(self, model: type[models.Model]) -> Problem | None:
        try:
            probe(self.alias, model)
        except ProgrammingError as e:
            return rows_problem(model, e)
        return None

    def _unloadable(self, model: type[models.Model], error: Exception) -> None:
        """Loading ``model`` failed for a reason of its own: it is broken until
        a check finds it back (its changes meanwhile are dropped, then resynced).
        """
        label = model_label(model)
        problem = catalog_problems(self.alias, [model]).get(label)
        self.health.update(label, problem or rows_problem(model, error))

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
        """Publish the updates that ``payloads`` (trigger notifications) mean.

        A broken model's changes are dropped (its pages resync once it is
        back), so a renamed table's notifications neither fail nor resync.
        """
        changes = collect(payloads, captured_labels())
        self.resyncs.owe(
            {k: v for k, v in changes.resync.items() if not self.health.broken(k)}
        )
        for label, by_event in changes.by_model().items():
            if label in self.resyncs.owed or self.health.broken(label):
                continue  # its pages resync: now (Redis refused) or once it is back
            model = apps.get_model(label)
            try:
                self._publish_model(model, by_event)
            except ProgrammingError as e:  # its table or columns, not the connection
                self._unloadable(model, e)

    def _publish_model(
        self, model: type[models.Model], by_event: dict[str, list[Any]]
    ) -> None:
        label = model_label(model)
        for event, pks in by_event.items():
            for batch in chunks(pks, BATCH_SIZE):
                if not self._publish(label, self._build(model, event, batch)):
                    return

    def _build(
        self, model: type[models.Model], event: str, pks: list[Any]
    ) -> list[Update]:
        if event == DELETE:
            instances = [model(pk=pk) for pk in pks]
        else:
            instances = self._load(model, pks)
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
                self.resyncs.owe({label: "an update it could not build"})
                continue
            # The row is gone: its data would be the model's defaults.
            updates.append(update.replace(data=None) if event == DELETE else update)
        return updates

    def _load(self, model: type[models.Model], pks: list[Any]) -> list[Any]:
        """The rows of ``pks`` still there (a later delete follows for the others).

        Keys the model cannot take (a notification not from its triggers) are
        logged and resync the model; they must not stop the capture.
        """
        try:
            return list(model._base_manager.using(self.alias).filter(pk__in=pks))
        except (ValueError, TypeError, ValidationError, DataError) as e:
            label = model_label(model)
            logger.warning(
                "pushy capture could not load %s keys %.200r: %s; its pages will "
                "be told to resync",
                label,
                pks,
                e,
            )
            self.resyncs.owe({label: "keys it could not load"})
            return []

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
            self.resyncs.owe({label: "a publish failed"})
            return False
