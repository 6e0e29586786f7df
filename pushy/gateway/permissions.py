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
import threading
import time
from collections.abc import Callable
from importlib import import_module
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import gevent
from django.conf import settings
from django.http.cookie import parse_cookie
from django.http.request import validate_host
from django.utils.module_loading import import_string
from gevent.event import AsyncResult

from pushy import authorization, conf
from pushy.gateway.questions import REFRESH, Questions, Refused

if TYPE_CHECKING:
    from pushy.gateway.visitor import Visitor

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
    what a typical authorization view does (bench/results/PROFILE.md), and a burst of
    questions would otherwise connect once per question. The last job of a
    burst, finding the queue empty, closes as usual; a thread that went idle
    while others still worked keeps its connection until its next job.
    """
    from django.db import close_old_connections, connections

    if load is not None and load.jobs > 1:
        for connection in connections.all(initialized_only=True):
            if connection.errors_occurred:
                connection.close_if_unusable_or_obsolete()
        _kept.burst = load.bursts
        return
    close_old_connections()
    _kept.burst = None


# Per pool thread: the burst in which it last kept its connections open.
_kept = threading.local()


def _reopen_db_connections(load: Any) -> None:
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

    burst = getattr(_kept, "burst", None)
    if burst is not None and burst != load.bursts:
        close_old_connections()
        _kept.burst = None


def _import_ahead(site_get: bool = False) -> None:
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
    if site_get:  # the middleware chain, built (and its modules imported) once
        from pushy import site_get as chain

        chain.handler()
    try:
        resolver.resolve("/")  # populates the resolver's caches
    except Resolver404:
        pass


def _job(load: Any, func: Callable[..., Any], *args: Any) -> Any:
    """``func(*args)`` in a pool thread, its DB connections seen to around it."""
    _reopen_db_connections(load)
    try:
        return func(*args)
    finally:
        _close_db_connections(load)


# The principal of anonymous visitors without a session: their requests carry
# no cookie that tells them apart (their address and page still do).
ANONYMOUS = None
# What an update did to who may see its object (Authorizer.mark).
SAME, MAYBE, CHANGED = 0, 1, 2
# Entries each cache keeps at most (the oldest go first).
MAX_CACHED = 100_000


class SessionRead:
    """What a session key stood for when it was read: its user, the session,
    and the principal decisions about it are shared under.

    The principal: a logged-in user's pk; for an anonymous visitor with a
    stored session, ``("session", key)`` (what the session holds, a guest
    order's ids, can change the answer); ``ANONYMOUS`` for one without.
    """

    __slots__ = ("user", "session", "principal", "expires")

    def __init__(self, user: Any, session: Any, expires: float) -> None:
        self.user = user
        self.session = session
        self.principal = _principal(user, session)
        self.expires = expires


class Identity:
    """A visitor as the gateway knows them: the session read, the visitor
    (its cookies, address, page), and the key of their shared decisions,
    ``(page, principal, address)`` (``Visitor.identity``)."""

    __slots__ = ("read", "visitor", "identity")

    def __init__(self, read: SessionRead, visitor: Visitor) -> None:
        self.read = read
        self.visitor = visitor
        self.identity = visitor.identity(read.principal)

    @property
    def user(self) -> Any:
        return self.read.user

    @property
    def session(self) -> Any:
        return self.read.session

    @property
    def anonymous(self) -> bool:
        return not self.read.user.is_authenticated


def _principal(user: Any, session: Any) -> Any:
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


def _ask(
    authorize: Callable[..., bool], who: Identity, url: str
) -> tuple[bool, str | None]:
    """One authorization question, in a pool thread: the answer, and when it
    is no, what the site said (for the refusal's message); an error means no."""
    try:
        if authorize is authorization.can_get:
            # The session decides the user: the site's middleware loads it.
            environ = who.visitor.environ()
            answer = authorization.get_answer(who.user, url, who.session, environ)
            return answer.allowed, None if answer.allowed else f"GET {answer.said()}"
        allowed = bool(authorize(_fresh(who.user), url))
        return allowed, None if allowed else "AUTHORIZE said no"
    except Exception as e:
        logger.exception("AUTHORIZE failed for %s: refusing", url)
        return False, f"AUTHORIZE raised {type(e).__name__}"


class Authorizer:
    """Answers 'may this visitor GET this URL?' off the event loop, cached.

    Sessions are cached by session key, and decisions by (identity, URL), both
    for ``AUTHORIZATION_TTL`` seconds, and shared by every connection of the
    process; the identity is (page, principal, address) (``Visitor``), so a
    decision is shared only where the answer cannot differ. A question already
    being asked is not asked twice (later askers wait for the same answer).
    ``identity_now()`` and ``known()`` never block, for the hub; ``who()`` and
    ``allows()`` block only the calling greenlet.
    """

    def __init__(self, pool_size: int, ttl: float, stats: Any = None) -> None:
        path = conf.get("AUTHORIZE")
        self.authorize = import_string(path) if path else authorization.can_get
        self.ttl = ttl
        self.stats = stats
        # The pool and who gets its threads when (questions.py).
        self.questions = Questions(
            pool_size,
            conf.get("AUTHORIZATION_TIMEOUT"),
            conf.get("MAX_QUESTIONS_PER_CONNECTION"),
            conf.get("MAX_QUESTIONS_PER_CLIENT"),
            stats,
        )
        self.sessions: dict[str, SessionRead] = {}
        # (identity, url) -> (allowed, expires, the URL's mark when asked).
        self.decisions: dict[tuple[Any, str], tuple[bool, float, int]] = {}
        # Visibility (docs/decisions.md): object URL -> (the last visibility token
        # an update carried, its mark). A mark is a number, from one counter for
        # all URLs, given whenever an update may have changed who may see the
        # URL (a new token, or none); a decision counts for an update only if it
        # was asked at that update's mark or later. 0: no mark known.
        self.marks: dict[str, tuple[str | None, int]] = {}
        # (identity, url) -> what the site answered a refused GET, in words.
        self.said: dict[tuple[Any, str], str] = {}
        self._marked = 0
        self._inflight: dict[Any, AsyncResult] = {}
        self._anonymous: SessionRead | None = None
        # A cached answer in use is asked again in the background in the last
        # quarter of its life, so busy entries do not expire under the hub's
        # feet (every subscriber waiting at once); revocation still takes
        # effect within the TTL. A quarter: busy entries cost 4/3 of the view
        # runs of asking on expiry (half would double them; docs/decisions.md).
        self.refresh_within = ttl / 4
        # The latest visitor seen of each identity: whom to ask as, for that
        # identity's background refreshes (never a visitor of another).
        self.people: dict[Any, Identity] = {}
        if self.needed:
            _import_ahead(self.authorize is authorization.can_get)

    @property
    def needed(self) -> bool:
        """False when every subscribe is allowed: no user to load, no thread hop."""
        return self.authorize is not authorization.allow_all

    @property
    def pending(self) -> int:
        """Questions (sessions to read, URLs to decide) being asked right now."""
        return len(self._inflight)

    # Never blocking ------------------------------------------------------

    def identity_now(self, visitor: Visitor, now: float) -> Any:
        """A visitor's identity if its session is known and fresh, else ``MISSING``."""
        key = visitor.session_key
        if key is None:
            return visitor.identity(ANONYMOUS)
        entry = self.sessions.get(key)
        if entry is None or entry.expires <= now:
            return MISSING
        if entry.expires - now < self.refresh_within:
            self._refresh(("session", key), self._read, key)
        return visitor.identity(entry.principal)

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
            who = self._asker(identity, now)
            if who is not None:
                self._refresh((identity, url, asked), self._decide, who, url, asked)
        return allowed

    def prior(self, visitor: Visitor, url: str) -> bool | None:
        """The last answer about ``url`` for a visitor's identity, however old;
        None: none known. What a subscriber was last shown, for "hidden"."""
        key = visitor.session_key
        if key is None:
            principal = ANONYMOUS
        else:
            entry = self.sessions.get(key)
            if entry is None:
                return None
            principal = entry.principal
        decision = self.decisions.get((visitor.identity(principal), url))
        return None if decision is None else decision[0]

    # Visibility marks ----------------------------------------------------

    def mark_of(self, url: str) -> int:
        """``url``'s mark now (0: none known)."""
        entry = self.marks.get(url)
        return 0 if entry is None else entry[1]

    def mark(
        self, url: str, token: str | None, was: str | None = None
    ) -> tuple[int, int]:
        """An update of ``url`` carrying ``token`` arrived: its mark, and
        ``SAME``, ``MAYBE`` or ``CHANGED``: whether it changed who may see ``url``.

        The same token as the last one keeps the mark (the warm path: one
        lookup). Otherwise a new mark, so older decisions stop counting: a
        token that differs from a known one is ``CHANGED``; no token (a model
        not in VISIBILITY_FIELDS) is ``MAYBE``. With none known here, the
        token the saving process loaded the object with (``was``) stands in
        for the last one: the first update this gateway sees of an object
        already tells whether it hid it.
        """
        entry = self.marks.get(url)
        if entry is None and token is not None and was is not None:
            entry = (was, 0)  # as if the gateway had seen the object load
            if was == token:
                _remember(self.marks, url, entry)
                return 0, SAME
        if token is not None and entry is not None and entry[0] == token:
            return entry[1], SAME
        known = token is not None and entry is not None and entry[0] is not None
        self._marked += 1
        _remember(self.marks, url, (token, self._marked))
        return self._marked, CHANGED if known else MAYBE

    def unmark(self, url: str) -> None:
        """``url``'s object was deleted: a later object there starts unknown."""
        self.marks.pop(url, None)

    def allows_now(self, visitor: Visitor, url: str) -> bool | None:
        """``allows()`` from the caches alone: None when it would have to ask."""
        if not self.needed:
            return True
        now = time.monotonic()
        identity = self.identity_now(visitor, now)
        if identity is MISSING:
            return None
        return self.known(identity, url, now)

    def _asker(self, identity: Any, now: float) -> Identity | None:
        """Whom a background refresh of ``identity``'s decisions asks as: its
        latest visitor, with its session as read now; None when that session
        is no longer fresh or no longer that identity's (the entry then
        expires, and whoever needs it next asks)."""
        who = self.people.get(identity)
        if who is None or who.read.expires > now:
            return who
        key = who.visitor.session_key
        read = self.sessions.get(key) if key is not None else None
        if read is None or read.expires <= now or read.principal != who.read.principal:
            return None
        who = Identity(read, who.visitor)
        self.people[identity] = who
        return who

    # Blocking the calling greenlet only ----------------------------------

    # ``asker``: the connection waiting for the answer (its client address is
    # its place in the pool's turn; when it closes, questions only it waits
    # for are dropped), or None. These raise ``questions.Refused`` (too many
    # questions waiting, or a view past AUTHORIZATION_TIMEOUT) and
    # ``questions.Dropped`` (every asker closed).

    def who(self, visitor: Visitor, asker: Any = None) -> Identity:
        """The visitor as the gateway knows them; the session is read again
        once its cache entry expired."""
        who = Identity(self._session(visitor.session_key, asker), visitor)
        _remember(self.people, who.identity, who)
        return who

    def _session(self, key: str | None, asker: Any = None) -> SessionRead:
        if key is None:
            if self._anonymous is None:
                self._anonymous = self._once(
                    ("session", None), self._read, None, asker=asker
                )
            return self._anonymous
        entry = self.sessions.get(key)
        if entry is not None and entry.expires > time.monotonic():
            return entry
        return self._once(("session", key), self._read, key, asker=asker)

    def allows(self, visitor: Visitor, url: str, asker: Any = None) -> bool:
        """Whether ``visitor`` may subscribe to ``url``."""
        if not self.needed:
            return True
        return self.decide(self.who(visitor, asker), url, asker=asker)

    def decide(
        self, who: Identity, url: str, mark: int = 0, *, asker: Any = None
    ) -> bool:
        """Whether ``who`` may GET ``url``: cached, else asked (once) in the pool.

        A decision counts if asked at ``mark`` or later, and at the URL's mark
        now: a question under way that began before counts neither, and is not
        joined (one asked at the same mark is).
        """
        mark = max(mark, self.mark_of(url))
        allowed = self.known(who.identity, url, time.monotonic(), mark=mark)
        if allowed is not None:
            return allowed
        return self._once(
            (who.identity, url, mark), self._decide, who, url, mark, asker=asker
        )

    def forget(self, asker: Any) -> None:
        """``asker`` closed: drop the questions that only it waited for."""
        self.questions.forget(asker)

    def _read(self, key: str | None, asker: Any = None) -> SessionRead:
        user, session = self._run(
            ("session", key), _load_session, key, asker=asker, label="a session read"
        )
        self._count("session_loads")
        if key is None:
            return SessionRead(user, session, float("inf"))
        entry = SessionRead(user, session, time.monotonic() + self.ttl)
        _remember(self.sessions, key, entry)
        return entry

    def _decide(
        self, who: Identity, url: str, mark: int = 0, asker: Any = None
    ) -> bool:
        allowed, said = self._run(
            (who.identity, url, mark), _ask, self.authorize, who, url,
            asker=asker, label=f"the authorization of {url}",
        )  # fmt: skip
        self._count("authorizations")
        key = (who.identity, url)
        newer = self.decisions.get(key)
        if newer is None or newer[2] <= mark:  # never over one asked at a later mark
            _remember(self.decisions, key, (allowed, time.monotonic() + self.ttl, mark))
            if said is None:
                self.said.pop(key, None)
            else:
                _remember(self.said, key, said)
        return allowed

    def why_not(self, who: Identity, url: str) -> str | None:
        """What the site last said when it refused ``who`` ``url``, if known."""
        return self.said.get((who.identity, url))

    def _run(
        self, key: Any, func: Callable[..., Any], *args: Any, asker: Any, label: str
    ) -> Any:
        """``func(*args)`` in the pool, in ``asker``'s turn; blocks this greenlet.

        A view that never answers must not hold its askers (and their readers)
        for good: past AUTHORIZATION_TIMEOUT they get ``TimedOut`` (questions.py).
        """
        questions = self.questions
        return questions.ask(
            key, _job, questions, func, *args, asker=asker, label=label
        )

    def _once(
        self, key: Any, compute: Callable[..., Any], *args: Any, asker: Any = None
    ) -> Any:
        """``compute(*args)``; if that question is already being asked, its answer."""
        pending = self._inflight.get(key)
        if pending is not None:
            self.questions.join(key, asker)  # so it is not dropped while we wait
            return pending.get()
        pending = self._inflight[key] = AsyncResult()
        try:
            value = compute(*args, asker=asker)
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
            self._once(key, compute, *args, asker=REFRESH)
        except Refused as refused:
            # Busy or too slow (counted, and logged by questions.py): the entry
            # keeps its answer until it expires, then is asked again.
            logger.debug("skipped an authorization refresh: %s", refused.message)
        except Exception:
            # The entry keeps its answer until it expires; then it is asked again.
            logger.warning("could not refresh an authorization answer", exc_info=True)

    def _count(self, name: str) -> None:
        if self.stats is not None:
            setattr(self.stats, name, getattr(self.stats, name) + 1)

    def close(self) -> None:
        self.questions.close()


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
