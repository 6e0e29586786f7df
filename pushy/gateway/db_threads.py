"""The housekeeping of the database thread pool's jobs.

ORM work (loading a session and its user, running a view for ``can_get`` or a
project's ``AUTHORIZE`` function) runs in a small pool of real threads,
``DB_POOL_SIZE`` of them (questions.py hands them out), so the event loop never
waits on the database. Around each job (``before_job``, ``after_job``: the
pool calls them) its thread's DB connections are seen to as around a request
(``CONN_MAX_AGE`` and ``CONN_HEALTH_CHECKS`` are honoured), and
``_import_ahead`` imports in the main thread what the threads' first
questions would.
"""

from __future__ import annotations

import logging
import threading
from importlib import import_module
from types import SimpleNamespace

from django.conf import settings

logger = logging.getLogger(__name__)


def after_job(left: int, burst: int) -> None:
    """After a job, in its pool thread: close DB connections as after a request.

    With CONN_MAX_AGE = 0 (the default) the connection closes, and with more it
    is kept per pool thread (so at most DB_POOL_SIZE are open) -- except while
    other jobs are waiting or running (``left`` of them, counted by the pool
    so that of jobs ending together exactly one sees none left): then the
    thread keeps its connection for the next one (closing only one that
    failed). Connecting costs about three times
    what a typical authorization view does (bench/results/PROFILE.md), and a burst of
    questions would otherwise connect once per question. The last job of a
    burst, finding the queue empty, closes as usual; a thread that went idle
    while others still worked keeps its connection until its next job.
    """
    from django.db import close_old_connections, connections

    if left > 0:
        for connection in connections.all(initialized_only=True):
            if connection.errors_occurred:
                connection.close_if_unusable_or_obsolete()
        _kept.burst = burst
        return
    close_old_connections()
    _kept.burst = None


# Per pool thread: the burst in which it last kept its connections open.
_kept = threading.local()


def before_job(burst: int) -> None:
    """Before a job, in its pool thread: see to connections kept from an
    earlier burst, as Django does when a request starts.

    A thread that went idle while others still worked kept its connections
    (above), for as long as it stays idle: hours, maybe, over which the
    server may have ended them (a restart, a failover, an idle timeout, a
    pooler's restart). Reused unseen, the first query fails, a session read
    yields an anonymous user and a logged-in page is refused. So the first job
    of a later burst on such a thread closes them if ``CONN_MAX_AGE`` says so
    (at 0: always) and lets ``CONN_HEALTH_CHECKS`` check them before their use.
    """
    from django.db import close_old_connections

    kept = getattr(_kept, "burst", None)
    if kept is not None and kept != burst:
        close_old_connections()
        _kept.burst = None


def _import_ahead(site_get: bool = False) -> None:
    """Import, in the main thread, what the pool threads' first questions would.

    Seen once in the benchmark: pool threads importing the same modules at once
    (the URLconf and its views, the session engine, the auth backends) under
    gevent's monkey-patched locks left three of them stuck for good. The
    import locks are cooperative now (locks.py); imports done here, before
    serving, still spare the first questions their time.
    """
    from django.contrib.auth import get_backends, get_user, get_user_model
    from django.db import connections
    from django.urls import Resolver404, get_resolver

    engine = import_module(settings.SESSION_ENGINE)
    get_backends()
    get_user_model()
    # The first session read imports the database path (the backend's
    # operations, the SQL compiler): two pool threads doing that at once hung
    # one reconnect test in six. So one read here, of a key no session has.
    try:
        get_user(SimpleNamespace(session=engine.SessionStore("0" * 32)))
    except Exception:  # the database is not up yet: its errors come later
        logger.debug("no session read ahead of serving", exc_info=True)
    finally:
        connections.close_all()
    resolver = get_resolver()
    resolver.url_patterns  # noqa: B018 -- imports the URLconf and its views
    if site_get:  # the middleware chain, built (and its modules imported) once
        from pushy import site_get as chain

        chain.handler()
    try:
        resolver.resolve("/")  # populates the resolver's caches
    except Resolver404:
        pass
