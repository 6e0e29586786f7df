"""One sender per process: updates reach Redis in commit order, and a save waits
for Redis at most ``PUBLISH_TIMEOUT``.

Each publish used to be a synchronous pipeline with a 2 s socket timeout: a hung
Redis (SIGSTOP, a black hole, ``CLIENT PAUSE WRITE``) cost every save 2 s, and
the "could not publish" lines named updates that Redis delivered later. Now:

- Every update gets a number of this process (``seq``) and joins one FIFO
  queue. Whoever holds the *send right* sends from the head of the queue, in
  pipelines of ``versions.PUBLISH_SCRIPT`` calls. The script skips a ``seq``
  Redis already ran, so a batch retried with the same numbers (on a fresh
  connection, after a timeout) is delivered once, and never after a later
  update of this process, even when the first attempt's bytes are executed late.
- The fast path: a caller that finds the queue empty and the right free takes
  it and sends its own updates itself, one round trip as before, with no thread
  hand-off. Otherwise it queues them, wakes the sender thread and waits for
  them. Either way it waits at most its budget, then returns; an answer still
  outstanding is handed to the thread, which keeps reading it on the same
  connection, or sends the batch again.
- The thread (a daemon, started on first use, and anew in a forked child)
  retries with backoff (0.1 s doubling to 5 s) until Redis answers. An episode
  of lateness is logged twice: when a caller stops waiting, and when Redis has
  confirmed everything.
- Bounds: ``MAX_QUEUED`` updates wait at most. Newer ones are dropped, and once
  Redis answers, ``versions.LOSE_SCRIPT`` moves the versions' floor and asks
  every gateway to resync its clients. At exit the process waits up to
  ``EXIT_WAIT`` seconds, then logs what Redis did not confirm.
- Redis refusing the script: for memory (OOM) the update is published plainly
  (Redis still takes ``PUBLISH``) and its URLs remembered, to move their
  versions once writes work again; for permissions (an ACL without ``EVALSHA``)
  plainly, logged once a minute; ``NOSCRIPT``: the scripts are loaded and the
  update sent again. Every script goes as ``versions.call()`` (EVALSHA), and
  a fresh connection's first pipeline loads them (``versions.load()``), so an
  update still costs one round trip.
- What else is owed to Redis rides in the same pipelines: the counts of
  refused updates (``refusals.stats_key()``) and the resyncs of every page for
  changes no update tells of (``LOSE_SCRIPT``, at most one a second).
- ``publish()``, the synchronous API, queues behind what waits too (it never
  overtakes a save's update) and waits up to ``SYNC_TIMEOUT``; it raises when
  Redis did not confirm, withdrawing what cannot have reached Redis.
"""

from __future__ import annotations

import atexit
import collections
import itertools
import logging
import os
import select
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import redis
from django.core.signals import setting_changed
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError
from redis.retry import Retry

from pushy import conf, redis_cluster, refusals, versions
from pushy.channels import resync_channel, resync_request
from pushy.exceptions import PublishError
from pushy.logs import Throttled
from pushy.messages import Update
from pushy.redis_clients import client_from_url, out_of_memory, redacted
from pushy.redis_cluster import is_cluster_url
from pushy.updates import Refusal

logger = logging.getLogger(__name__)

# Updates that may wait for Redis; past it, new ones are dropped (and every page
# told to resync once Redis answers).
MAX_QUEUED = 10_000
# Updates per pipeline.
MAX_BATCH = 500
# Seconds a process at exit waits for Redis to confirm what is queued.
EXIT_WAIT = 5.0
# Seconds publish() (pushy.broadcast, the capture process) waits for Redis.
SYNC_TIMEOUT = 3.0
# The sender thread's patience: to connect, and for each answer, before it
# drops the connection and sends the batch again on a fresh one.
CONNECT_TIMEOUT = 1.0
SOCKET_TIMEOUT = 2.0
FIRST_BACKOFF = 0.1
MAX_BACKOFF = 5.0
# URLs remembered whose versions Redis did not move (out of memory); past it,
# every page is told to resync instead.
MAX_UNVERSIONED = 10_000
OVERFLOW_REASON = "publisher queue overflow"
# Seconds between two resyncs of every page for losses (those in between wait
# and go as one: a model whose URL method fails on every save must not make
# every page refetch at that rate).
LOSE_INTERVAL = 1.0
UNVERSIONED_REASON = "versions not moved: Redis refused writes"
# The version scripts the pipelines call, loaded first on a fresh connection
# and after a NOSCRIPT (versions.call()).
SCRIPTS = (versions.PUBLISH_SCRIPT, versions.LOSE_SCRIPT)

# How an update goes out.
VERSIONED, PLAIN, PLAIN_BARE = 0, 1, 2

_client_lock = threading.Lock()
# One client for the process (in the gateway, its pool threads share it too:
# pushy/gateway/shared_sockets.py).
_client: redis.Redis | None = None


def get_client() -> redis.Redis:
    """The shared Redis client, created on first use from ``REDIS_URL``."""
    global _client
    with _client_lock:
        if _client is None:
            _client = client_from_url(
                conf.get("REDIS_URL"),
                socket_connect_timeout=CONNECT_TIMEOUT,
                socket_timeout=SOCKET_TIMEOUT,
                retry=Retry(NoBackoff(), 0),
            )
        return _client


def reset_client() -> None:
    """Drop the client and its pool (after REDIS_URL changed)."""
    global _client
    with _client_lock:
        old, _client = _client, None
    if old is not None:
        old.close()


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == conf.SETTING_NAME:
        reset_client()
        # The raw value: conf's cache may not have been reset yet.
        value = kwargs.get("value")
        url = value.get("REDIS_URL") if isinstance(value, dict) else None
        sender = _sender
        if sender is not None and sender.cluster != is_cluster_url(url):
            replace(is_cluster_url(url))  # its link, its commands: the other mode


setting_changed.connect(_on_setting_changed, dispatch_uid="pushy.sending.reset")


def redacted_redis_url() -> str:
    """``REDIS_URL`` without its password, for log lines."""
    return redacted(conf.get("REDIS_URL"))


class _Job:
    """One caller's updates: how many Redis has not confirmed, their receivers."""

    __slots__ = (
        "receivers", "left", "event", "late", "queued_at", "failure", "sync",
        "refused", "withdrawn",
    )  # fmt: skip

    def __init__(self, count: int, sync: bool, now: float) -> None:
        self.receivers: list[int | None] = [None] * count
        self.left = count
        self.event: threading.Event | None = None  # made when someone waits
        self.late = False
        self.queued_at = now
        self.failure: BaseException | str | None = None  # why an attempt failed
        self.sync = sync  # publish(): withdrawn when it cannot have reached Redis
        self.refused: BaseException | None = None  # even a plain PUBLISH was
        self.withdrawn = False

    def wake(self) -> None:
        if self.event is not None:
            self.event.set()


class _Item:
    """One update in the queue, with its number."""

    __slots__ = ("update", "seq", "job", "index", "mode", "taken", "sent", "done")

    def __init__(self, update: Update, seq: int, job: _Job, index: int) -> None:
        self.update = update
        self.seq = seq
        self.job = job
        self.index = index
        self.mode = VERSIONED
        self.taken = False  # in the attempt being made
        self.sent = False  # some attempt's bytes may have reached Redis
        self.done = False


class _Loss:
    """Changes no update will tell of: every page must resync (LOSE_SCRIPT)."""

    __slots__ = ("models", "reasons", "dropped", "publish", "floor")

    def __init__(self) -> None:
        self.models: collections.Counter[str] = collections.Counter()
        self.reasons: set[str] = set()
        self.dropped: collections.Counter[str] = collections.Counter()  # overflow
        self.publish = True  # the resync request is still to be published
        self.floor = True  # the versions' floor is still to be moved

    def merge(self, other: _Loss) -> None:
        self.models.update(other.models)
        self.reasons |= other.reasons
        self.dropped.update(other.dropped)
        self.publish = self.publish or other.publish
        self.floor = self.floor or other.floor

    def body(self) -> str:
        return resync_request(self.models, sorted(self.reasons))

    def floor_only(self) -> _Loss:
        """The floors still to move, the resync request being sent (a cluster's
        book that did not take its ``LOSE_SCRIPT``)."""
        again = _Loss()
        again.models.update(self.models)
        again.reasons |= self.reasons
        again.publish = False
        return again


class _Attempt:
    """One pipeline: its commands, what each answer means, the answers read."""

    __slots__ = (
        "items", "commands", "meanings", "replies", "setup", "written", "reused",
        "loaded",
    )  # fmt: skip

    def __init__(self) -> None:
        self.reused = False  # written on a connection that had answered before
        self.loaded = False  # SCRIPT LOAD went first
        self.items: list[_Item] = []
        self.commands: list[tuple] = []
        self.meanings: list[tuple] = []
        self.replies: list[Any] = []
        self.setup = 0  # answers to skip: the set-up of a fresh connection
        self.written = False

    def add(self, command: tuple, meaning: tuple) -> None:
        self.commands.append(command)
        self.meanings.append(meaning)


class _Unanswered(Exception):
    """Redis did not answer in time; the connection still waits for it."""


class ScriptRefused(redis.ResponseError):
    """NOSCRIPT right after SCRIPT LOAD: Redis will not run the script."""


class _Episode:
    """A time when Redis did not confirm updates within their callers' budget."""

    __slots__ = ("confirmed", "repeats", "worst")

    def __init__(self) -> None:
        self.confirmed = 0
        self.repeats = 0
        self.worst = 0.0


class _Link:
    """The sender's one connection; used only by the holder of the send right.

    redis-py's pipeline is not used: its answers could not be read on after a
    timeout (the fast path hands a late answer to the thread on the same
    connection), and it costs more. The socket's timeout is set only when it
    must change (each change is a system call, on every save otherwise).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.client: redis.Redis | None = None
        self.conn: Any = None
        self.poller: Any = None
        self.timeout = 0.0  # the socket's timeout now
        self.fresh = False  # no answer read on it yet
        self.load = True  # load SCRIPTS before the next batch

    def drop(self) -> None:
        conn, self.conn, self.poller = self.conn, None, None
        if conn is not None:
            conn.disconnect()

    def ready(self, timeout: float) -> None:
        """Connected: the connection in use, or a new one if it is gone or stale."""
        client = get_client()
        if client is not self.client:
            self.drop()
            self.client = client
        if self.conn is not None and not self._stale():
            self.fresh = False
            return
        self.drop()
        conn = client.connection_pool.make_connection()
        conn.socket_connect_timeout = conn.socket_timeout = max(timeout, 0.001)
        conn.connect()
        self.conn, self.timeout = conn, conn.socket_timeout
        self.fresh = self.load = True
        if hasattr(select, "poll") and getattr(conn, "_sock", None) is not None:
            self.poller = select.poll()
            self.poller.register(conn._sock, select.POLLIN)

    def _stale(self) -> bool:
        """Whether Redis closed the idle connection (or sent what nobody asked)."""
        try:
            if self.poller is not None and not self.poller.poll(0):
                return False  # nothing to read: the usual case, one system call
            return self.conn.can_read(0)  # TLS records are not data: ask
        except (redis.ConnectionError, OSError, ValueError):
            return True

    def redirected(self) -> None:
        """One Redis sends nobody elsewhere (a cluster's link reads its map)."""

    def setup(self) -> list[tuple]:
        """Commands sent first: name the connection, load the scripts."""
        commands = []
        if self.fresh:
            commands.append(("CLIENT", "SETNAME", self.name))
        if self.load:
            commands += [versions.load(script) for script in SCRIPTS]
            self.load = False
        return commands

    def write(self, commands: list[tuple], timeout: float) -> None:
        self._set_timeout(timeout)
        conn = self.conn
        conn.send_packed_command(conn.pack_commands(commands), check_health=False)

    def read(self, timeout: float) -> Any:
        if timeout <= 0:
            raise _Unanswered("no time left")
        self._set_timeout(timeout)
        try:
            return self.conn.read_response(disconnect_on_error=False)
        except redis.TimeoutError as e:
            raise _Unanswered(str(e)) from e
        except redis.ResponseError as e:
            return e

    def _set_timeout(self, timeout: float) -> None:
        sock = getattr(self.conn, "_sock", None)
        if sock is not None and timeout != self.timeout:
            sock.settimeout(max(timeout, 0.001))
            self.timeout = timeout


class Sender:
    """The queue, the send right, the thread, and what is owed to Redis."""

    def __init__(self, cluster: bool | None = None) -> None:
        self.id = uuid.uuid4().hex
        self.lock = threading.Lock()
        self.work = threading.Condition(self.lock)
        self.queue: collections.deque[_Item] = collections.deque()
        self.numbers = itertools.count(1)
        self.busy = False  # someone holds the send right
        self.handover: _Attempt | None = None  # for the thread to finish
        self.thread: threading.Thread | None = None
        self.stopped = False
        self.wake = threading.Event()  # cuts a backoff short (exit, stop)
        name = f"pushy-publisher:{os.getpid()}:{self.id[:8]}"
        # Redis Cluster mode (pushy/sending_cluster.py) is chosen here, once.
        if cluster is None:
            cluster = is_cluster_url(conf.get("REDIS_URL"))
        self.cluster = cluster
        if self.cluster:
            from pushy import sending_cluster

            self.link: Any = sending_cluster.ClusterLink(name)
            self._cluster = sending_cluster
        else:
            self.link = _Link(name)
        self.episode: _Episode | None = None
        self.owed_counts: collections.Counter[str] = collections.Counter()
        self.loss: _Loss | None = None  # not yet sent
        self.lose_after = 0.0  # no resync of every page before (LOSE_INTERVAL)
        self.dropping = False
        # (url, collection) -> model: published plainly, versions not moved.
        self.unversioned: dict[tuple[str, str | None], str] = {}
        self.writes_ok = True  # False since Redis refused a write for memory
        self.stats: collections.Counter[str] = collections.Counter()
        self.moved = 0  # grows whenever something owed moves on (backoff)
        self.flushers = 0  # threads waiting in flush()

    # The callers' side ------------------------------------------------------

    def publish_quietly(
        self, updates: Sequence[Update], refused: Iterable[Refusal] = ()
    ) -> None:
        """Queue; wait up to PUBLISH_TIMEOUT for Redis to confirm; never raise."""
        deadline = time.monotonic() + conf.get("PUBLISH_TIMEOUT")
        job, fast = self._submit(updates, refused, sync=False)
        if fast:
            self._send_fast(job, deadline, conf.get("PUBLISH_TIMEOUT"))
        if job is None or not job.left:
            return
        if not fast and not job.late:  # during a late episode waiting cannot help
            self._wait(job, deadline)
        if job.left:
            self._give_up_waiting(job)

    def publish(self, updates: Sequence[Update]) -> list[int]:
        """Queue behind what waits, wait up to SYNC_TIMEOUT; the receiver counts.

        PublishError when Redis did not confirm them: updates that cannot have
        reached it are withdrawn, those that may have stay queued (and the
        message says so). A repeat (an earlier attempt delivered it, its answer
        was lost) counts 0 receivers.
        """
        if not updates:
            return []
        deadline = time.monotonic() + SYNC_TIMEOUT
        job, fast = self._submit(updates, (), sync=True)
        if job is None:
            raise PublishError(
                f"pushy's queue for Redis at {redacted_redis_url()} is full "
                f"({MAX_QUEUED:,} updates): not published"
            )
        if fast:
            self._send_fast(job, deadline, SOCKET_TIMEOUT)
        self._wait(job, deadline)
        if job.left:
            self._fail_sync(job)
        problem = job.failure if job.withdrawn else job.refused
        if problem is not None:
            raise PublishError(f"Redis at {redacted_redis_url()}: {problem}")
        return [n or 0 for n in job.receivers]

    def refusal_noted(self) -> None:
        """A refusal was left out of the log: the thread owes a line later."""
        with self.lock:
            self._start()
            self.work.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait until nothing is queued or owed; False if something still is."""
        deadline = time.monotonic() + timeout
        with self.lock:
            if not self._pending(now=False):
                return True
            self._start()
            self.work.notify_all()
        self.wake.set()  # now, not after a backoff
        with self.lock:
            self.flushers += 1
            try:
                while self._pending(now=False):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self.work.wait(left)
            finally:
                self.flushers -= 1
        return True

    def close(self, timeout: float = EXIT_WAIT) -> None:
        """At exit: wait for Redis a while, then say what it did not confirm."""
        if self.flush(timeout):
            return
        with self.lock:
            items = [item for item in self.queue if not item.done]
            loss, unversioned = self.loss, len(self.unversioned)
        _log_unsent(items, loss, unversioned, timeout)

    def stop(self) -> None:
        """End the thread (tests); what is queued stays unsent."""
        with self.lock:
            self.stopped = True
            self.work.notify_all()
        self.wake.set()
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(SOCKET_TIMEOUT + CONNECT_TIMEOUT + 1)
        self.link.drop()

    def _submit(
        self, updates: Sequence[Update], refused: Iterable[Refusal], sync: bool
    ) -> tuple[_Job | None, bool]:
        job = _Job(len(updates), sync, time.monotonic())
        with self.lock:
            self._start()
            for refusal in refused:
                self.owed_counts[refusal.reason] += 1
                if refusal.stand_in is None:
                    self._lose(refusal.model, f"refused update ({refusal.reason})")
            if len(self.queue) + len(updates) > MAX_QUEUED:
                if not sync:  # publish() raises instead: its caller knows
                    self._drop(updates)
                    self.work.notify_all()
                return None, False
            idle = not (self.busy or self.queue or self.handover)
            fast = idle and (bool(updates) or self._pending())
            for index, update in enumerate(updates):
                # Stamped at the commit: the lag gateways measure includes
                # the time spent queued here while Redis was away.
                item = _Item(update.stamped(), next(self.numbers), job, index)
                self.queue.append(item)
            if fast:
                self.busy = True
            else:
                job.late = self.episode is not None
                self.work.notify_all()
        return job, fast

    def _wait(self, job: _Job, deadline: float) -> None:
        with self.lock:
            if not job.left or job.failure is not None:
                return
            job.event = threading.Event()
        job.event.wait(max(0.0, deadline - time.monotonic()))

    def _give_up_waiting(self, job: _Job) -> None:
        """Past the budget: the job stays queued, and a late episode begins."""
        with self.lock:
            if not job.left:
                return
            job.late = True
            if self.episode is not None:
                return
            self.episode = _Episode()
            waiting = sum(1 for item in self.queue if not item.done)
        logger.warning(
            "Redis at %s has not confirmed %d update%s within %.0f ms; they stay "
            "queued and go out in order when it answers",
            redacted_redis_url(),
            waiting,
            _s(waiting),
            conf.get("PUBLISH_TIMEOUT") * 1000,
        )

    def _fail_sync(self, job: _Job) -> None:
        """publish() had no confirmation in time: withdrawn, or left queued."""
        with self.lock:
            if not job.left:
                return
            job.failure = job.failure or f"no answer within {SYNC_TIMEOUT:g} s"
            self._withdraw(job)
        if job.withdrawn:
            return
        self._give_up_waiting(job)
        raise PublishError(
            f"Redis at {redacted_redis_url()} has not confirmed the update(s) "
            f"({job.failure}); they stay queued and go out in order when it answers"
        )

    def _withdraw(self, job: _Job) -> None:
        """Take a publish()'s updates out, if none can have reached Redis."""
        if job.left < len(job.receivers):
            return  # some went out already: the rest stays, in order
        mine = [item for item in self.queue if item.job is job]
        if any(item.sent or item.taken for item in mine):
            return
        self.queue = collections.deque(i for i in self.queue if i.job is not job)
        job.left, job.withdrawn = 0, True
        job.wake()

    # What is owed (all called holding the lock) -----------------------------

    def _lose(self, model: str, reason: str, dropped: int = 0) -> None:
        loss = _Loss()
        loss.models[model] += 1
        loss.reasons.add(reason)
        if dropped:
            loss.dropped[model] += dropped
        self._owe_loss(loss)

    def _owe_loss(self, loss: _Loss) -> None:
        if self.loss is None:
            self.loss = loss
        else:
            self.loss.merge(loss)

    def _loss_due(self) -> bool:
        loss = self.loss
        if loss is None or time.monotonic() < self.lose_after:
            return False
        return self._loss_sendable(loss)

    def _loss_sendable(self, loss: _Loss) -> bool:
        return loss.publish or (loss.floor and self.writes_ok)

    def _drop(self, updates: Sequence[Update]) -> None:
        for update in updates:
            self._lose(update.model, OVERFLOW_REASON, dropped=1)
        if not self.dropping:
            self.dropping = True
            logger.error(
                "pushy's queue for Redis at %s is full (%s updates wait for it): "
                "dropping new updates, the first of %s pk=%s; once Redis answers, "
                "every page will be told to resync",
                redacted_redis_url(),
                f"{MAX_QUEUED:,}",
                updates[0].model,
                updates[0].pk,
            )

    def _remember(self, update: Update) -> None:
        """Versions Redis did not move (it refused writes): move them later."""
        if len(self.unversioned) >= MAX_UNVERSIONED:
            for model in set(self.unversioned.values()):
                self._lose(model, UNVERSIONED_REASON)
            self.unversioned.clear()
        self.unversioned[(update.url, update.collection)] = update.model

    def _pending(self, now: bool = True) -> bool:
        """Whether there is something to send to Redis (``now``, or when due)."""
        loss = self.loss
        return bool(
            self.queue
            or self.handover
            or (self._loss_due() if now else loss and self._loss_sendable(loss))
            or (self.writes_ok and (self.owed_counts or self.unversioned))
        )

    # The send right ---------------------------------------------------------

    def _start(self) -> None:
        """Start the thread if it is not running (holding the lock)."""
        if self.stopped or (self.thread is not None and self.thread.is_alive()):
            return
        self.thread = threading.Thread(
            target=self._run, name="pushy-sender", daemon=True
        )
        self.thread.start()

    def _send_fast(self, job: _Job, deadline: float, step: float) -> None:
        """Send the caller's own updates on its own thread (holding the right)."""
        attempt = None
        first = True  # what is owed goes too, with or without updates
        try:
            while (first or job.left) and job.failure is None:
                first = False
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                with self.lock:
                    attempt = self._plan(only=job)
                if attempt is None:
                    break
                try:
                    self._exchange(attempt, step, deadline)
                except _Unanswered:
                    break  # handed over below: the thread reads on
                except (redis.RedisError, OSError) as error:
                    self._failed(attempt, error)  # a stale connection: again
                else:
                    self._settle(attempt)
                attempt = None
        finally:
            with self.lock:
                if attempt is not None:
                    self.handover = attempt
                else:
                    self.busy = False
                if self._pending(now=False):  # now, or a resync due later
                    self.work.notify_all()

    def _run(self) -> None:
        while True:
            attempt = self._await_work()
            if attempt is False:
                return
            try:
                self._drain(attempt)
            except Exception:  # a bug of ours must not end the thread
                logger.exception("pushy's sender failed; it goes on")
                self.link.drop()
                time.sleep(FIRST_BACKOFF)
            finally:
                with self.lock:
                    self.busy = False
                    self.work.notify_all()

    def _await_work(self) -> _Attempt | None | bool:
        """Wait for work; return holding the send right (and any hand-over).

        False when stopped. Left-out refusal lines are written meanwhile.
        """
        while True:
            due = refusals.next_due()
            with self.lock:
                if self.loss is not None:
                    wait = max(0.0, self.lose_after - time.monotonic())
                    due = wait if due is None else min(due, wait)
                if self.stopped:
                    return False
                if self.handover is not None:
                    attempt, self.handover = self.handover, None
                    return attempt  # busy stays set: the right passes on
                if not self.busy and self._pending():
                    self.busy = True
                    return None
                self.work.wait(due)
            refusals.flush_due()

    def _drain(self, attempt: _Attempt | None) -> None:
        """Send until nothing is left to send; back off while Redis fails."""
        backoff = FIRST_BACKOFF
        while not self.stopped:
            if attempt is None:
                with self.lock:
                    attempt = self._plan() if self._pending() else None
                if attempt is None:
                    return
            try:
                self._exchange(attempt, SOCKET_TIMEOUT)
                progress = self._settle(attempt)
            except (_Unanswered, redis.RedisError, OSError) as error:
                self._failed(attempt, error)
                progress = attempt.reused  # a stale connection: at once, anew
            attempt = None
            if progress:
                backoff = FIRST_BACKOFF
            else:
                self.wake.wait(backoff)
                self.wake.clear()
                backoff = min(backoff * 2, MAX_BACKOFF)
            refusals.flush_due()

    # One pipeline -----------------------------------------------------------

    def _plan(self, only: _Job | None = None) -> _Attempt | None:
        """The next attempt, from the head of the queue (holding the lock).

        ``only``: the fast path sends its own updates (and what is owed), no
        one else's.
        """
        attempt = _Attempt()
        self._plan_owed(attempt)
        ttl = int(conf.get("VERSION_TTL"))
        if self.cluster:  # keys by bucket, made per update
            keys: Any = self.id
            make = self._cluster.command
        else:
            keys = (
                versions.book_key(), versions.sender_key(self.id),
                versions.history_key(),
            )  # fmt: skip
            make = _command
        for item in self.queue:
            if len(attempt.items) >= MAX_BATCH or (only and item.job is not only):
                break
            if not item.done:
                item.taken = True
                attempt.items.append(item)
                attempt.add(make(item, ttl, keys), ("update", item))
        if only is None and self.writes_ok and self.unversioned:
            for key in itertools.islice(self.unversioned, MAX_BATCH):
                attempt.add(self._move(ttl, keys, *key), ("move", key))
        return attempt if attempt.commands else None

    def _move(self, ttl: int, keys: Any, url: str, collection: str | None) -> tuple:
        """Moves the versions of ``url`` (published plainly) without publishing."""
        if self.cluster:
            return redis_cluster.move_command(ttl, keys, url, collection)
        args = versions.publish_args(ttl, "", b"", url, collection, "")
        return versions.call(versions.PUBLISH_SCRIPT, keys, args)

    def _plan_owed(self, attempt: _Attempt) -> None:
        if self._loss_due():
            loss, self.loss = self.loss, None
            self.lose_after = time.monotonic() + LOSE_INTERVAL
            if loss.floor and self.writes_ok:
                channel = resync_channel() if loss.publish else ""
                if self.cluster:  # every other book's floor first
                    *others, last = self._cluster.lose_commands(channel, loss.body())
                    for command in others:
                        attempt.add(command, ("floor", loss))
                    attempt.add(last, ("lose", loss, True))
                else:
                    args = versions.lose_args(None, channel, loss.body())
                    keys = (versions.book_key(),)
                    command = versions.call(versions.LOSE_SCRIPT, keys, args)
                    attempt.add(command, ("lose", loss, True))
            else:
                publish = "SPUBLISH" if self.cluster else "PUBLISH"
                command = (publish, resync_channel(), loss.body())
                attempt.add(command, ("lose", loss, False))
        if self.writes_ok:
            for reason, n in self.owed_counts.items():
                command = ("HINCRBY", refusals.stats_key(), reason, n)
                attempt.add(command, ("count", reason, n))
            self.owed_counts.clear()

    def _exchange(
        self, attempt: _Attempt, step: float, deadline: float | None = None
    ) -> None:
        """Connect if needed, write the attempt (once), read its answers.

        Each step (connecting, writing, each answer) may take ``step``; with a
        ``deadline`` (the fast path), less once half a step or less is left.
        """
        link = self.link
        if not attempt.written:
            self.stats["attempts"] += 1
            link.ready(min(CONNECT_TIMEOUT, _patience(step, deadline)))
            attempt.reused = not link.fresh
            setup = link.setup()
            attempt.setup = len(setup)
            attempt.loaded = any(command[0] == "SCRIPT LOAD" for command in setup)
            for item in attempt.items:
                item.sent = True
            attempt.written = True
            link.write(setup + attempt.commands, _patience(step, deadline))
        total = attempt.setup + len(attempt.commands)
        while len(attempt.replies) < total:
            attempt.replies.append(link.read(_patience(step, deadline)))
            link.fresh = False

    def _failed(self, attempt: _Attempt | None, error: BaseException) -> None:
        """The connection failed or Redis did not answer: settle what was read.

        A connection that had answered before may just have been closed by
        Redis meanwhile: that is no failure of the updates' yet (they are sent
        again at once, on a fresh one).
        """
        self.stats["failures"] += 1
        self.link.drop()
        if attempt is not None:
            self._settle(attempt, None if attempt.reused else error)

    def _settle(self, attempt: _Attempt, error: BaseException | None = None) -> bool:
        """Act on the answers read; what was not answered stays owed or queued.

        True if anything moved on (the thread backs off when nothing did).
        """
        replies = attempt.replies[attempt.setup :]
        ran = _last_ran(attempt.meanings, replies, self._group)
        loaded = attempt.loaded and len(attempt.replies) >= attempt.setup
        now = time.monotonic()
        notes: list[tuple] = []
        with self.lock:
            before = self.moved
            for position, meaning in enumerate(attempt.meanings):
                if position >= len(replies):
                    self._unanswered(meaning, error)
                    continue
                reply = replies[position]
                if isinstance(reply, NoScriptError) and loaded:
                    reply = ScriptRefused(f"{reply} (after SCRIPT LOAD)")
                stranded = _stranded(meaning, position, ran, self._group)
                self._answer(meaning, reply, stranded, now, notes)
            for item in attempt.items:
                item.taken = False
            if error is not None:  # a publish() that cannot have reached Redis
                for job in {item.job for item in attempt.items if item.job.sync}:
                    self._withdraw(job)
            while self.queue and self.queue[0].done:
                self.queue.popleft()
            progress = self.moved != before
            notes += self._episode_over()
            if self.flushers:
                self.work.notify_all()
        for note in notes:
            _log(*note)
        return progress

    def _answer(
        self, meaning: tuple, reply: Any, stranded: bool, now: float, notes: list
    ) -> None:
        """One answer. Whatever changes what the next attempt sends is progress."""
        kind, detail = meaning[0], meaning[1]
        failed = isinstance(reply, Exception)
        if failed and self.cluster and self._cluster.redirected(reply):
            self._redirected(meaning, reply, stranded, notes)
            return
        oom = out_of_memory(reply)
        if not failed or (oom and self.writes_ok):
            self.moved += 1
        if oom:
            self.writes_ok = False
            notes.append(("oom", reply))
        if kind == "update":
            self._answer_update(detail, reply, stranded, now, notes)
        elif kind == "lose":
            self._answer_loss(detail, meaning[2], reply, notes)
        elif not failed:
            if kind == "move":
                self.unversioned.pop(detail, None)
        elif oom:
            if kind == "count":
                self.owed_counts[detail] += meaning[2]  # once writes work
        elif isinstance(reply, NoScriptError):
            self.link.load = True  # a move, sent again after SCRIPT LOAD
            self.moved += 1
        else:  # refused for good (an ACL): counts are dropped, moves given up
            notes.append(("counter" if kind == "count" else "script", reply))
            self.moved += 1
            if kind == "move":
                self.unversioned.clear()

    def _redirected(
        self, meaning: tuple, reply: Exception, stranded: bool, notes: list
    ) -> None:
        """The cluster did not run the command on that master (a failover, a
        slot migrating or migrated): it goes again, on the master the slot map
        names once read again. Nothing ran, so an update keeps its number,
        unless a later one of its bucket ran (then it goes plainly, as after
        NOSCRIPT)."""
        self.link.redirected()
        if self._cluster.moved(reply):
            self.moved += 1  # the map read again sends it right: no backoff
        kind, detail = meaning[0], meaning[1]
        if kind == "update" and stranded:
            self._go_plain(detail, reply, stranded, notes)
        elif kind == "count":
            self.owed_counts[detail] += meaning[2]
        elif kind in ("lose", "floor"):
            self.lose_after = 0.0
            self._owe_loss(detail if kind == "lose" else detail.floor_only())
        # An update not stranded stays queued; a move stays in ``unversioned``.

    def _group(self, item: _Item) -> int:
        """Updates whose sends share a sender key (a cluster's: one per bucket)."""
        return redis_cluster.bucket(item.update.url) if self.cluster else 0

    def _answer_update(
        self, item: _Item, reply: Any, stranded: bool, now: float, notes: list
    ) -> None:
        if isinstance(reply, list):  # the script ran: {receivers, version}
            receivers = int(reply[0])
            if receivers >= 0:
                self.writes_ok = True
            self._confirm(item, receivers if receivers >= 0 else None, now)
        elif isinstance(reply, int):  # a plain PUBLISH
            self._confirm(item, reply, now)
        elif item.mode != VERSIONED:  # even a plain PUBLISH was refused
            notes.append(("refused", item.update, reply))
            item.job.refused = item.job.refused or reply
            self._confirm(item, None, now)
        elif isinstance(reply, NoScriptError) and not stranded:
            self.link.load = True  # sent again after SCRIPT LOAD
            self.moved += 1
        else:
            self._go_plain(item, reply, stranded, notes)

    def _go_plain(
        self, item: _Item, reply: Exception, stranded: bool, notes: list
    ) -> None:
        """Publish without the script: Redis refused it, or a later one ran first.

        A later update of this process that ran has a higher seq, so the script
        would now skip this one as a repeat: it goes plainly, without data (its
        pages refetch, so arriving after the later one shows nothing stale).
        """
        self.moved += 1
        self.stats["plain"] += 1
        item.mode = PLAIN_BARE if stranded else PLAIN
        if stranded or out_of_memory(reply):
            self._remember(item.update)
        elif not isinstance(reply, NoScriptError):
            notes.append(("script", reply))

    def _answer_loss(
        self, loss: _Loss, scripted: bool, reply: Any, notes: list
    ) -> None:
        """The resync of every page went out, or what of it is still owed."""
        if not isinstance(reply, Exception):
            loss.floor = loss.floor and not scripted
            loss.publish = False
        elif out_of_memory(reply):
            pass  # a plain PUBLISH next; the floor once writes work
        elif isinstance(reply, NoScriptError):
            self.link.load = True  # sent again at once, after SCRIPT LOAD
            self.lose_after = 0.0
            self.moved += 1
        elif scripted:
            notes.append(("script", reply))
            loss.floor = False  # scripts are refused: the resync request alone
            self.moved += 1
        else:
            notes.append(("resync_refused", reply))
            loss.publish = False
            self.moved += 1
        if not loss.publish and loss.dropped:
            notes.append(("lost", loss.dropped.copy()))
            self.dropping = False
            loss.dropped.clear()
        if loss.publish or loss.floor:
            self._owe_loss(loss)

    def _unanswered(self, meaning: tuple, error: BaseException | None) -> None:
        kind = meaning[0]
        if kind == "update":
            job = meaning[1].job
            if error is not None and job.failure is None:
                job.failure = error
                job.wake()
        elif kind == "count":
            self.owed_counts[meaning[1]] += meaning[2]
        elif kind == "lose":
            self._owe_loss(meaning[1])

    def _confirm(self, item: _Item, receivers: int | None, now: float) -> None:
        item.done = True
        self.stats["confirmed"] += 1
        job = item.job
        job.receivers[item.index] = receivers
        job.left -= 1
        episode = self.episode
        if job.late and episode is not None:
            episode.confirmed += 1
            if receivers is None and item.mode == VERSIONED:
                episode.repeats += 1
            episode.worst = max(episode.worst, now - job.queued_at)
        if not job.left:
            job.wake()

    def _episode_over(self) -> list[tuple]:
        if self.episode is None or self.queue or self.handover:
            return []
        episode, self.episode = self.episode, None
        return [("late", episode)] if episode.confirmed else []


def _command(item: _Item, ttl: int, keys: tuple[str, ...]) -> tuple:
    update = item.update
    if item.mode == VERSIONED:
        args = versions.publish_args(
            ttl, update.channel, update.encode(), update.url, update.collection,
            str(item.seq),
        )  # fmt: skip
        return versions.call(versions.PUBLISH_SCRIPT, keys, args)
    if item.mode == PLAIN_BARE:
        update = update.replace(data=None)
    return ("PUBLISH", update.channel, update.encode())


def _last_ran(meanings: list[tuple], replies: list[Any], group: Any) -> dict[int, int]:
    """Per ``group`` of updates, the position of the last one whose script ran."""
    last = {}
    for position, reply in enumerate(replies):
        meaning = meanings[position]
        if meaning[0] == "update" and isinstance(reply, list):
            last[group(meaning[1])] = position
    return last


def _stranded(meaning: tuple, position: int, ran: dict, group: Any) -> bool:
    """Whether a later update sharing the sender key of this one's ran: the
    script would skip this one as a repeat now (PUBLISH_SCRIPT's ``seq``)."""
    return meaning[0] == "update" and position < ran.get(group(meaning[1]), -1)


def _patience(step: float, deadline: float | None) -> float:
    """How long the next step may take: ``step``, or what is left if less.

    Half a step of slack spares a system call per step (the socket's timeout
    changes only when it must): a caller may wait up to 1.5 steps.
    """
    if deadline is None:
        return step
    left = deadline - time.monotonic()
    return step if left > step / 2 else left


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def _by_model(models: Iterable[str]) -> str:
    counted = collections.Counter(models)
    return ", ".join(f"{model}: {n}" for model, n in counted.most_common())


# Log lines that say the same each time: at most one a minute per kind.
WARNING_INTERVAL = 60.0
_lines: dict[str, Throttled] = {}


def _log(kind: str, *details: Any) -> None:
    url = redacted_redis_url()
    if kind == "late":
        (episode,) = details
        repeats = episode.repeats
        logger.warning(
            "Redis at %s confirmed %d update%s %.1f s late%s",
            url,
            episode.confirmed,
            _s(episode.confirmed),
            episode.worst,
            f" ({repeats} had already been delivered by an earlier attempt)"
            if repeats
            else "",
        )
    elif kind == "lost":
        (dropped,) = details
        logger.error(
            "Redis at %s answered again: %d update%s dropped while pushy's queue "
            "was full (%s) were replaced by a resync: the versions' floor moved and "
            "every gateway told its clients to resync",
            url,
            dropped.total(),
            _s(dropped.total()),
            _by_model(dropped.elements()),
        )
    elif kind == "refused":
        update, error = details
        logger.error(
            "Redis at %s refused to publish the %s of %s pk=%s (%s): not published",
            url,
            update.event,
            update.model,
            update.pk,
            error,
        )
    elif kind == "resync_refused":
        logger.error("Redis at %s refused pushy's resync request: %s", url, *details)
    elif _due(kind):
        _log_refusal(kind, url, *details)


def _due(kind: str) -> bool:
    line = _lines.get(kind)
    if line is None:
        line = _lines.setdefault(kind, Throttled(logger, WARNING_INTERVAL))
    return line.due()


def _log_refusal(kind: str, url: str, error: Exception) -> None:
    if kind == "oom":
        logger.warning(
            "Redis at %s refuses writes for lack of memory (%s): publishing without "
            "versions; their URLs' versions move once it takes writes again",
            url,
            error,
        )
    elif kind == "counter":
        logger.warning(
            "Redis at %s refused to count refused updates (%s); they are counted "
            "in this process only",
            url,
            error,
        )
    else:
        logger.warning(
            "Redis at %s refused pushy's version script (%s): publishing without "
            "versions; reconnecting pages will resync every URL",
            url,
            error,
        )


def _log_unsent(
    items: list[_Item], loss: _Loss | None, unversioned: int, waited: float
) -> None:
    """At exit: what Redis did not confirm. Nothing more can be done then."""
    url = redacted_redis_url()
    if items:
        sent = sum(1 for item in items if item.sent)
        unsent = len(items) - sent
        parts = []
        if unsent:
            parts.append(f"{unsent} never reached it and {_are(unsent)} lost")
        if sent:
            parts.append(
                f"{sent} {'was' if sent == 1 else 'were'} sent and may still be "
                f"delivered if Redis executes {'it' if sent == 1 else 'them'}"
            )
        logger.error(
            "Redis at %s did not confirm %d update%s (%s) in the %g s this process "
            "waited at exit: %s. Nothing more can be done: pages showing these "
            "objects learn of the changes when they reload or resync",
            url,
            len(items),
            _s(len(items)),
            _by_model(item.update.model for item in items),
            waited,
            "; ".join(parts),
        )
    if loss is not None and (loss.publish or loss.floor):
        logger.error(
            "Redis at %s was not told, before this process exited, that changes of "
            "%s went unpublished (%s): pages that missed them are not resynced",
            url,
            _by_model(loss.models.elements()),
            "; ".join(sorted(loss.reasons)),
        )
    if unversioned:
        logger.error(
            "Redis at %s did not move the versions of %d URL%s published without "
            "them before this process exited; gateways start a new version epoch "
            "when Redis takes writes again",
            url,
            unversioned,
            _s(unversioned),
        )


def _are(n: int) -> str:
    return "is" if n == 1 else "are"


_sender_lock = threading.Lock()
_sender: Sender | None = None


def get() -> Sender:
    """This process's sender, made on first use (and anew in a forked child)."""
    global _sender
    sender = _sender
    if sender is None:
        with _sender_lock:
            if _sender is None:
                _sender = Sender()
            sender = _sender
    return sender


def replace(cluster: bool | None = None) -> Sender:
    """Stop this process's sender and start a fresh one (tests, a new REDIS_URL)."""
    global _sender
    with _sender_lock:
        old, _sender = _sender, Sender(cluster)
    if old is not None:
        old.stop()
    return _sender


def _at_exit() -> None:
    sender = _sender
    if sender is not None:
        sender.close(EXIT_WAIT)


def _after_fork_in_child() -> None:
    # The parent's sender, thread, connection and locks stay the parent's: a
    # child numbers its own sends, under a name of its own.
    global _sender_lock, _sender, _client_lock, _client
    _sender_lock, _sender = threading.Lock(), None
    _client_lock, _client = threading.Lock(), None


atexit.register(_at_exit)
os.register_at_fork(after_in_child=_after_fork_in_child)
