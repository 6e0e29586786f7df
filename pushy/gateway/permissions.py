"""Who may connect and subscribe: Origin check, session user, authorization.

ORM work (loading a session and its user, running a view for ``can_get`` or a
project's ``AUTHORIZE`` function)
runs in a small pool of real threads, ``DB_POOL_SIZE`` of them, so the event
loop never waits on the database; after each job its DB connections are closed
as after a request (``CONN_MAX_AGE`` is honoured).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from importlib import import_module
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import gevent
from django.conf import settings
from django.http.cookie import parse_cookie
from django.http.request import validate_host
from django.utils.module_loading import import_string
from gevent.event import AsyncResult
from gevent.threadpool import ThreadPool

from pushy import authorization, conf

logger = logging.getLogger(__name__)


# Origins of web pages; file://, 'null' (sandboxes, redirects), extensions and
# other schemes never pass, whatever their host.
ORIGIN_SCHEMES = ("http", "https")


def origin_allowed(origin: str | None, patterns: list[str]) -> bool:
    """Whether a handshake's Origin may connect (any port; no Origin: not a browser)."""
    if origin is None:
        return True
    try:
        parts = urlsplit(origin.strip())
        host = parts.hostname
    except ValueError:
        return False
    if parts.scheme not in ORIGIN_SCHEMES or not host:
        return False
    if ":" in host:  # urlsplit drops an IPv6 literal's brackets; patterns keep them.
        host = f"[{host}]"
    return validate_host(host, patterns)


def session_key(cookie_header: str | None) -> str | None:
    """The Django session key in a Cookie header, if any.

    Parsed as Django parses ``request.COOKIES`` (``parse_cookie``), not with
    ``SimpleCookie``, which drops the whole header at one cookie it dislikes
    (``consent=a b``): the socket must see the user the site sees.
    """
    if not cookie_header:
        return None
    return parse_cookie(cookie_header).get(settings.SESSION_COOKIE_NAME) or None


def _close_db_connections(load: Any = None) -> None:
    """After a job, in its pool thread: close DB connections as after a request.

    With CONN_MAX_AGE = 0 (the default) the connection closes, and with more it
    is kept per pool thread (so at most DB_POOL_SIZE are open) -- except while
    other jobs are waiting or running (``load.jobs`` counts this one too): then
    the thread keeps its connection for the next one (closing only one that
    failed). Connecting costs about three times
    what a typical authorization view does (bench/PROFILE.md), and a burst of
    questions would otherwise connect once per question. The last job of a
    burst, finding the queue empty, closes as usual; a thread that went idle
    while others still worked keeps its connection until its next job.
    """
    from django.db import close_old_connections, connections

    if load is not None and load.jobs > 1:
        for connection in connections.all(initialized_only=True):
            if connection.errors_occurred:
                connection.close_if_unusable_or_obsolete()
        return
    close_old_connections()


def _import_ahead() -> None:
    """Import, in the main thread, what the pool threads' first questions would.

    Seen once in the benchmark: pool threads importing the same modules at once
    (the URLconf and its views, the session engine, the auth backends) under
    gevent's monkey-patched locks left three of them stuck for good. Imports
    done here, before serving, are not done there.
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
    try:
        resolver.resolve("/")  # populates the resolver's caches
    except Resolver404:
        pass


def _job(load: Any, func: Callable[..., Any], *args: Any) -> Any:
    """``func(*args)`` in a pool thread, then its DB connections seen to."""
    try:
        return func(*args)
    finally:
        _close_db_connections(load)


# Seconds a question (a session read, a view run) may take before its askers
# give up: the subscribe is refused, held updates are withheld.
QUESTION_TIMEOUT = 30.0


class QuestionTimeout(Exception):
    """Raised when the pool did not answer a question within QUESTION_TIMEOUT."""


# The identity anonymous visitors without a session share: their requests
# carry nothing that tells them apart, so a decision for one is for all.
ANONYMOUS = None
# What an update did to who may see its object (Authorizer.mark).
SAME, MAYBE, CHANGED = 0, 1, 2
# Entries each cache keeps at most (the oldest go first).
MAX_CACHED = 100_000


class Identity:
    """A session as the gateway knows it: its user, their identity, the session.

    The identity says whose decisions may be shared: a logged-in user's (the
    user's pk); an anonymous visitor's with a session of its own (its key: what
    the session holds, a guest order's ids, can change the answer); anonymous
    visitors without one (``ANONYMOUS``, all alike).
    """

    __slots__ = ("user", "identity", "session", "expires")

    def __init__(self, user: Any, session: Any, expires: float) -> None:
        self.user = user
        self.identity = _identity(user, session)
        self.session = session
        self.expires = expires

    @property
    def anonymous(self) -> bool:
        return not self.user.is_authenticated


def _identity(user: Any, session: Any) -> Any:
    if user.is_authenticated:
        return user.pk
    # A key that names no stored session was dropped when the session loaded
    # (get_user read it): such a visitor is like one without a cookie.
    key = getattr(session, "session_key", None)
    return ANONYMOUS if key is None else ("session", key)


def _load_session(key: str | None) -> tuple[Any, Any]:
    """The user and session a session key stands for, as a view would see them.

    Runs in a pool thread. A missing, expired, deleted or garbage session is the
    anonymous user, never an error.
    """
    from django.contrib.auth import get_user
    from django.contrib.auth.models import AnonymousUser

    engine = import_module(settings.SESSION_ENGINE)
    try:
        session = engine.SessionStore(key)
        user = get_user(SimpleNamespace(session=session))
        return user, session
    except Exception:
        logger.warning("could not load the session user", exc_info=True)
        return AnonymousUser(), engine.SessionStore()


# Where django.contrib.auth's ModelBackend caches a user's permissions on the
# user object; a question must see permissions as they are now, not as they were
# when the session was read (up to AUTHORIZATION_TTL earlier).
PERMISSION_CACHES = ("_perm_cache", "_user_perm_cache", "_group_perm_cache")


def _fresh(user: Any) -> Any:
    """A copy of ``user`` without cached permissions (also: no sharing between
    the pool threads that ask about one user at once)."""
    user = copy.copy(user)
    for name in PERMISSION_CACHES:
        user.__dict__.pop(name, None)
    return user


def _ask(authorize: Callable[..., bool], who: Identity, url: str) -> bool:
    """One authorization question, in a pool thread; an error means no."""
    try:
        user = _fresh(who.user)
        if authorize is authorization.can_get:
            return authorization.can_get(user, url, who.session)
        return bool(authorize(user, url))
    except Exception:
        logger.exception("AUTHORIZE failed for %s: refusing", url)
        return False


class Authorizer:
    """Answers 'may this session's user GET this URL?' off the event loop, cached.

    Sessions are cached by session key and decisions by (user identity, URL),
    both for ``AUTHORIZATION_TTL`` seconds, and shared by every connection of the
    process; a question already being asked is not asked twice (later askers
    wait for the same answer). ``identity_now()`` and ``known()`` never block,
    for the hub; ``who()`` and ``allows()`` block only the calling greenlet.
    """

    def __init__(self, pool_size: int, ttl: float, stats: Any = None) -> None:
        path = conf.get("AUTHORIZE")
        self.authorize = import_string(path) if path else authorization.can_get
        self.ttl = ttl
        self.stats = stats
        self.pool = ThreadPool(pool_size)
        self.sessions: dict[str, Identity] = {}
        # (identity, url) -> (allowed, expires, the URL's mark when asked).
        self.decisions: dict[tuple[Any, str], tuple[bool, float, int]] = {}
        # Visibility (docs/decisions.md): object URL -> (the last visibility token
        # an update carried, its mark). A mark is a number, from one counter for
        # all URLs, given whenever an update may have changed who may see the
        # URL (a new token, or none); a decision counts for an update only if it
        # was asked at that update's mark or later. 0: no mark known.
        self.marks: dict[str, tuple[str | None, int]] = {}
        self._marked = 0
        self._inflight: dict[Any, AsyncResult] = {}
        self._anonymous: Identity | None = None
        self.jobs = 0  # pool jobs waiting or running
        # A cached answer in use is asked again in the background in the last
        # quarter of its life, so busy entries do not expire under the hub's
        # feet (every subscriber waiting at once); revocation still takes
        # effect within the TTL. A quarter: busy entries cost 4/3 of the view
        # runs of asking on expiry (half would double them; docs/decisions.md).
        self.refresh_within = ttl / 4
        # The latest session read of each identity: whom to ask as, for that.
        self.people: dict[Any, Identity] = {}
        if self.needed:
            _import_ahead()

    @property
    def needed(self) -> bool:
        """False when every subscribe is allowed: no user to load, no thread hop."""
        return self.authorize is not authorization.allow_all

    @property
    def pending(self) -> int:
        """Questions (sessions to read, URLs to decide) being asked right now."""
        return len(self._inflight)

    # Never blocking ------------------------------------------------------

    def identity_now(self, key: str | None, now: float) -> Any:
        """The identity of a session key if known and fresh, else ``MISSING``."""
        if key is None:
            return ANONYMOUS
        entry = self.sessions.get(key)
        if entry is None or entry.expires <= now:
            return MISSING
        if entry.expires - now < self.refresh_within:
            self._refresh(("session", key), self._read, key)
        return entry.identity

    def known(
        self,
        identity: Any,
        url: str,
        now: float,
        stale: bool = False,
        mark: int | None = None,
    ) -> bool | None:
        """The cached decision, or None when there is none.

        ``stale``: however old, whatever the mark (a delete). Otherwise only a
        decision asked at ``mark`` (default: the URL's mark now) or later counts.
        """
        entry = self.decisions.get((identity, url))
        if entry is None:
            return None
        allowed, expires, asked = entry
        if stale:
            return allowed
        if mark is None:
            mark = self.mark_of(url)
        if expires <= now or asked < mark:
            return None
        if expires - now < self.refresh_within:
            who = self.people.get(identity)
            if who is not None:
                self._refresh((identity, url, asked), self._decide, who, url, asked)
        return allowed

    def prior(self, key: str | None, url: str) -> bool | None:
        """The last answer about ``url`` for a session's user, however old; None:
        none known. What a subscriber was last shown, for a "hidden" message."""
        if key is None:
            identity = ANONYMOUS
        else:
            entry = self.sessions.get(key)
            if entry is None:
                return None
            identity = entry.identity
        decision = self.decisions.get((identity, url))
        return None if decision is None else decision[0]

    # Visibility marks ----------------------------------------------------

    def mark_of(self, url: str) -> int:
        """``url``'s mark now (0: none known)."""
        entry = self.marks.get(url)
        return 0 if entry is None else entry[1]

    def mark(self, url: str, token: str | None) -> tuple[int, int]:
        """An update of ``url`` carrying ``token`` arrived: its mark, and
        ``SAME``, ``MAYBE`` or ``CHANGED``: whether it changed who may see ``url``.

        The same token as the last one keeps the mark (the warm path: one
        lookup). Otherwise a new mark, so older decisions stop counting: a
        token that differs from a known one is ``CHANGED``; no token (a model
        not in VISIBILITY_FIELDS), or none known before, is ``MAYBE``.
        """
        entry = self.marks.get(url)
        if token is not None and entry is not None and entry[0] == token:
            return entry[1], SAME
        known = token is not None and entry is not None and entry[0] is not None
        self._marked += 1
        _remember(self.marks, url, (token, self._marked))
        return self._marked, CHANGED if known else MAYBE

    def unmark(self, url: str) -> None:
        """``url``'s object was deleted: a later object there starts unknown."""
        self.marks.pop(url, None)

    def allows_now(self, key: str | None, url: str) -> bool | None:
        """``allows()`` from the caches alone: None when it would have to ask."""
        if not self.needed:
            return True
        now = time.monotonic()
        identity = self.identity_now(key, now)
        if identity is MISSING:
            return None
        return self.known(identity, url, now)

    # Blocking the calling greenlet only ----------------------------------

    def who(self, key: str | None) -> Identity:
        """The user behind a session key, re-read once its cache entry expired."""
        if key is None:
            if self._anonymous is None:
                self._anonymous = self._once(("session", None), self._read, None)
            return self._anonymous
        entry = self.sessions.get(key)
        if entry is not None and entry.expires > time.monotonic():
            return entry
        return self._once(("session", key), self._read, key)

    def allows(self, key: str | None, url: str) -> bool:
        """Whether the user of session ``key`` may subscribe to ``url``."""
        if not self.needed:
            return True
        return self.decide(self.who(key), url)

    def decide(self, who: Identity, url: str, mark: int = 0) -> bool:
        """Whether ``who`` may GET ``url``: cached, else asked (once) in the pool.

        A decision counts if asked at ``mark`` or later, and at the URL's mark
        now: a question under way that began before counts neither, and is not
        joined (one asked at the same mark is).
        """
        mark = max(mark, self.mark_of(url))
        allowed = self.known(who.identity, url, time.monotonic(), mark=mark)
        if allowed is not None:
            return allowed
        return self._once((who.identity, url, mark), self._decide, who, url, mark)

    def _read(self, key: str | None) -> Identity:
        user, session = self._run(_load_session, key)
        self._count("session_loads")
        entry = Identity(user, session, time.monotonic() + self.ttl)
        if key is not None:
            _remember(self.sessions, key, entry)
        _remember(self.people, entry.identity, entry)
        return entry

    def _decide(self, who: Identity, url: str, mark: int) -> bool:
        allowed = self._run(_ask, self.authorize, who, url)
        self._count("authorizations")
        key = (who.identity, url)
        newer = self.decisions.get(key)
        if newer is None or newer[2] <= mark:  # never over one asked at a later mark
            _remember(self.decisions, key, (allowed, time.monotonic() + self.ttl, mark))
        return allowed

    def _run(self, func: Callable[..., Any], *args: Any) -> Any:
        """``func(*args)`` in the pool; blocks this greenlet only.

        Raises ``QuestionTimeout`` after QUESTION_TIMEOUT seconds: a view that
        never answers must not hold its askers (and their readers) for good.
        """
        self.jobs += 1  # read by pool threads: see _close_db_connections
        try:
            with gevent.Timeout(QUESTION_TIMEOUT, QuestionTimeout):
                return self.pool.apply(_job, (self, func, *args))
        finally:
            self.jobs -= 1

    def _once(self, key: Any, compute: Callable[..., Any], *args: Any) -> Any:
        """``compute(*args)``; if that question is already being asked, its answer."""
        pending = self._inflight.get(key)
        if pending is not None:
            return pending.get()
        pending = self._inflight[key] = AsyncResult()
        try:
            value = compute(*args)
        except BaseException as e:
            pending.set_exception(e)
            raise
        finally:
            del self._inflight[key]
        pending.set(value)
        return value

    def _refresh(self, key: Any, compute: Callable[..., Any], *args: Any) -> None:
        """Ask ``key``'s question again in a greenlet of its own, unless under way."""
        if key not in self._inflight:
            gevent.spawn(self._refresh_now, key, compute, *args)

    def _refresh_now(self, key: Any, compute: Callable[..., Any], *args: Any) -> None:
        try:
            self._once(key, compute, *args)
        except Exception:
            # The entry keeps its answer until it expires; then it is asked again.
            logger.warning("could not refresh an authorization answer", exc_info=True)

    def _count(self, name: str) -> None:
        if self.stats is not None:
            setattr(self.stats, name, getattr(self.stats, name) + 1)

    def close(self) -> None:
        self.pool.kill()


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def _remember(cache: dict, key: Any, value: Any) -> None:
    """Store ``value``, newest last; past MAX_CACHED the oldest entry goes."""
    cache.pop(key, None)
    cache[key] = value
    if len(cache) > MAX_CACHED:
        del cache[next(iter(cache))]
