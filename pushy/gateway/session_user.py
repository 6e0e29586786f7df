"""Who a visitor is: the session cookie, and the session user it stands for.

The gateway reads the Django session named by a handshake's cookie (in the
database thread pool, db_threads.py) and shares what it read among the
connections of that session (permissions.py caches it). A visitor's
*principal* is whom decisions about them are shared under.
"""

from __future__ import annotations

import copy
import logging
from importlib import import_module
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.http.cookie import parse_cookie

if TYPE_CHECKING:
    from pushy.gateway.visitor import Visitor

logger = logging.getLogger(__name__)

# The principal of anonymous visitors without a session: their requests carry
# no cookie that tells them apart (their address and page still do).
ANONYMOUS = None


def session_key(cookie_header: str | None) -> str | None:
    """The Django session key in a Cookie header, if any.

    Parsed as Django parses ``request.COOKIES`` (``parse_cookie``), not with
    ``SimpleCookie``, which drops the whole header at one cookie it dislikes
    (``consent=a b``): the socket must see the user the site sees.
    """
    if not cookie_header:
        return None
    return parse_cookie(cookie_header).get(settings.SESSION_COOKIE_NAME) or None


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
