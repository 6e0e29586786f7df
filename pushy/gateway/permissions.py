"""May this visitor GET this URL? The cached authorizer.

``Authorizer`` answers from its caches when it can (never blocking the event
loop) and otherwise asks in the database thread pool (questions.py hands the
threads out; db_threads.py sees to their connections): it reads the session
user (session_user.py), then runs ``can_get`` or the project's ``AUTHORIZE``
function (``pushy.authorization.ask``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gevent.event import AsyncResult

from pushy import authorization, conf
from pushy.gateway.db_threads import _import_ahead, after_job, before_job

# Re-exported: server.py and the tests import them from here.
from pushy.gateway.origins import origin_allowed  # noqa: F401
from pushy.gateway.questions import REFRESH, Questions, Refused
from pushy.gateway.refreshes import Refreshes
from pushy.gateway.session_user import (
    ANONYMOUS,
    Identity,
    SessionRead,
    _fresh,
    _load_session,
    session_key,  # noqa: F401 -- re-exported
)

if TYPE_CHECKING:
    from pushy.gateway.visitor import Visitor

logger = logging.getLogger(__name__)


# What an update did to who may see its object (Authorizer.mark).
SAME, MAYBE, CHANGED = 0, 1, 2
# Entries each cache keeps at most (the oldest go first).
MAX_CACHED = 100_000


def _ask(
    authorize: Callable[..., bool], who: Identity, url: str
) -> tuple[bool, str | None]:
    """One authorization question, in a pool thread: the answer, and when it
    is no, what the site said (for the refusal's message); an error means no.

    With ``can_get`` the session decides the user (the site's middleware loads
    it); another authorizer gets the user without cached permissions."""
    try:
        allowed, answer = authorization.ask(
            authorize, _fresh(who.user), url, who.session, who.visitor.environ()
        )
    except Exception as e:
        logger.exception("AUTHORIZE failed for %s: refusing", url)
        return False, f"AUTHORIZE raised {type(e).__name__}"
    if allowed:
        return True, None
    return False, "AUTHORIZE said no" if answer is None else f"GET {answer.said()}"


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
        self.authorize = authorization.configured()
        self.ttl = ttl
        self.stats = stats
        # The pool and who gets its threads when (questions.py).
        self.questions = Questions(
            pool_size,
            conf.get("AUTHORIZATION_TIMEOUT"),
            conf.get("MAX_QUESTIONS_PER_CONNECTION"),
            conf.get("MAX_QUESTIONS_PER_CLIENT"),
            stats,
            before_job=before_job,
            after_job=after_job,
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
        # Counts the changes that can end what ``steady()`` said: a session
        # read, a decision stored with another answer than before, a new mark.
        self.changes = 0
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
        # Background refreshes, out of the fan-out's way (refreshes.py).
        self.refreshes = Refreshes(self._refresh_now, pool_size)
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

    def steady(
        self, visitor: Visitor, subscribed: str | None, now: float
    ) -> tuple[Any, float] | None:
        """A visitor's identity, and until when it stays so without asking or
        refreshing anything: the hub's warm path (Gate) skips ``identity_now``
        and ``known`` for it until then, or until ``changes`` moves.

        With ``subscribed`` (a collection the visitor holds), also that its
        answer for it is a fresh "yes". None when the slow path must decide
        (something is missing, refused, or due for a refresh).
        """
        identity = self.identity_now(visitor, now)
        if identity is MISSING:
            return None
        until = float("inf")
        key = visitor.session_key
        if key is not None:
            until = self.sessions[key].expires - self.refresh_within
        if subscribed is not None:
            entry = self.decisions.get((identity, subscribed))
            if entry is None or not entry[0] or entry[2] < self.mark_of(subscribed):
                return None
            until = min(until, entry[1] - self.refresh_within)
        return (identity, until) if until > now else None

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
        self.changes += 1
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
        self.changes += 1
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
            if newer is None or newer[0] != allowed:
                self.changes += 1
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
        return self.questions.ask(key, func, *args, asker=asker, label=label)

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

    def fanning_out(self, now: float) -> None:
        """An update is being fanned out: background refreshes wait."""
        self.refreshes.fanning_out(now)

    def _refresh(self, key: Any, compute: Callable[..., Any], *args: Any) -> None:
        """Ask ``key``'s question again in the background, unless under way."""
        if key not in self._inflight:
            self.refreshes.add(key, compute, args, first=compute == self._read)

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
        self.refreshes.close()
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
