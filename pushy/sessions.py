"""Read-only session stores: what the authorization GET's middleware sees.

The gateway asks "could this visitor GET this URL?" by running the site's
middleware and view (``pushy.site_get``). Whatever they do to the session must
stay invisible: a store from ``read_only()`` holds a copy of the data the
gateway already loaded for the visitor (so the answer matches the identity it
is cached under, and the session is not read twice) and never writes: saving,
deleting, creating or cycling its key change nothing stored.

Nothing here imports gevent: stores are made in the gateway's pool threads.
"""

from __future__ import annotations

import copy
import functools
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY

__all__ = ["read_only", "logged_in", "is_read_only"]


def read_only(session: Any) -> Any:
    """A store of ``session``'s engine with a copy of its data, that never writes.

    The copy is deep: a view appending to a list in the session must not
    change the data the gateway keeps for the next question.
    """
    data = copy.deepcopy(session._session) if session is not None else {}
    key = getattr(session, "session_key", None)
    return _with_data(key, data)


def logged_in(user: Any) -> Any:
    """A read-only store holding ``user``'s login, as ``Client.force_login``
    would write it (no login for an anonymous user)."""
    data: dict[str, Any] = {}
    if getattr(user, "is_authenticated", False) and user.pk is not None:
        backend = getattr(user, "backend", None) or settings.AUTHENTICATION_BACKENDS[0]
        data = {
            SESSION_KEY: user._meta.pk.value_to_string(user),
            BACKEND_SESSION_KEY: backend,
            HASH_SESSION_KEY: user.get_session_auth_hash(),
        }
    return _with_data(None, data)


def is_read_only(session: Any) -> bool:
    return getattr(session, "pushy_read_only", False)


def _with_data(key: str | None, data: dict) -> Any:
    store = _read_only_class(_engine_store())(None)
    store._session_key = key  # not validated again: the gateway loaded it so
    store._session_cache = data
    return store


def _engine_store() -> type:
    return import_module(settings.SESSION_ENGINE).SessionStore


@functools.cache
def _read_only_class(store: type) -> type:
    """``store`` with every write made a no-op (one class per engine)."""

    class ReadOnlySessionStore(store):  # type: ignore[misc, valid-type]
        pushy_read_only = True

        def save(self, must_create: bool = False) -> None:
            pass

        def create(self) -> None:
            pass

        def delete(self, session_key: str | None = None) -> None:
            pass

        def cycle_key(self) -> None:
            pass

    ReadOnlySessionStore.__qualname__ = f"ReadOnly{store.__qualname__}"
    return ReadOnlySessionStore
