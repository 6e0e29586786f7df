"""Who may connect and subscribe: Origin check, session user, AUTHORIZE.

ORM work (loading a session and its user, a project's ``AUTHORIZE`` function)
runs in a small pool of real threads, ``DB_POOL_SIZE`` of them, so the event
loop never waits on the database; after each job its DB connections are closed
as after a request (``CONN_MAX_AGE`` is honoured).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from http.cookies import CookieError, SimpleCookie
from importlib import import_module
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http.request import validate_host
from django.utils.module_loading import import_string
from gevent.threadpool import ThreadPool

from pushy import conf

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
    """The Django session key in a Cookie header, if any."""
    if not cookie_header:
        return None
    cookies = SimpleCookie()
    try:
        cookies.load(cookie_header)
    except CookieError:
        return None
    morsel = cookies.get(settings.SESSION_COOKIE_NAME)
    return morsel.value if morsel else None


def _close_db_connections() -> None:
    # As Django does after each request: with CONN_MAX_AGE = 0 (the default) the
    # connection closes; with more, each pool thread keeps one, so at most
    # DB_POOL_SIZE stay open.
    from django.db import close_old_connections

    close_old_connections()


def _load_user(key: str | None) -> Any:
    """The user a session key belongs to, as a view would see it; in a pool thread."""
    from django.contrib.auth import get_user
    from django.contrib.auth.models import AnonymousUser

    if key is None:
        return AnonymousUser()
    try:
        engine = import_module(settings.SESSION_ENGINE)
        request = SimpleNamespace(session=engine.SessionStore(key))
        return get_user(request)
    except Exception:
        # A broken cookie or session store means anonymous, never an error.
        logger.warning("could not load the session user", exc_info=True)
        return AnonymousUser()
    finally:
        _close_db_connections()


def _ask(authorize: Callable[[Any, str], bool], user: Any, url: str) -> bool:
    try:
        return bool(authorize(user, url))
    finally:
        _close_db_connections()


class Authorizer:
    """Answers 'may this connection subscribe to this URL?' off the event loop."""

    def __init__(self, pool_size: int) -> None:
        path = conf.get("AUTHORIZE")
        self.authorize = import_string(path) if path else None
        self.pool = ThreadPool(pool_size)

    @property
    def needed(self) -> bool:
        """False when every subscribe is allowed: no user to load, no thread hop."""
        return self.authorize is not None

    def user(self, key: str | None) -> Any:
        """The user for a session key (blocks only the calling greenlet)."""
        return self.pool.apply(_load_user, (key,))

    def allows(self, user: Any, url: str) -> bool:
        if self.authorize is None:
            return True
        return self.pool.apply(_ask, (self.authorize, user, url))

    def close(self) -> None:
        self.pool.kill()
