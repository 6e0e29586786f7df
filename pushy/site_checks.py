"""What would make the default authorization's answer not the site's own.

``pushy.checks.check_site_get`` reports each as a system check error
(``pushy.E014`` to ``pushy.E016``) when ``AUTHORIZE`` is unset; the hints name
the fix. See docs/settings.md, "Authorization".
"""

from __future__ import annotations

from collections.abc import Iterator

from django.conf import settings
from django.utils.module_loading import import_string

# Known by name, not imported: a project without django.contrib.auth cannot
# import auth's middleware (its models need the app).
SESSION_MIDDLEWARE = "django.contrib.sessions.middleware.SessionMiddleware"
REMOTE_USER_MIDDLEWARE = "django.contrib.auth.middleware.RemoteUserMiddleware"

# Session engines that keep sessions only in a cache (no database behind).
CACHE_SESSION_ENGINES = ("django.contrib.sessions.backends.cache",)
# Cache backends a gateway process cannot share with the site's processes.
PRIVATE_CACHES = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
)
OWN_RULE = (
    "or set PUSHY_SETTINGS['AUTHORIZE'] to a function f(user, url) -> bool of your own."
)


def problems() -> Iterator[tuple[int, str, str]]:
    """(check number, message, hint) for each problem found."""
    for path in settings.MIDDLEWARE:
        try:
            factory = import_string(path)
        except ImportError:
            continue  # Django's own handler reports it at the first request
        if not isinstance(factory, type):
            continue
        yield from _session_middleware(path, factory)
        yield from _remote_user(path, factory)
    yield from _session_engine()


def _session_middleware(path: str, factory: type) -> Iterator[tuple[int, str, str]]:
    # Named as one: SessionTimeoutMiddleware and the like only read the session.
    if _is_a(factory, SESSION_MIDDLEWARE) or not factory.__name__.endswith(
        "SessionMiddleware"
    ):
        return
    yield (
        14,
        f"MIDDLEWARE has {path}, a session middleware that is not Django's "
        "SessionMiddleware: pushy's authorization GET cannot make its session "
        "read-only, so the gateway's questions could save sessions and set "
        "what its visitors' next requests see.",
        "Use django.contrib.sessions.middleware.SessionMiddleware or a subclass "
        "of it, " + OWN_RULE + " If it does not make request.session, add "
        "'pushy.E014' to SILENCED_SYSTEM_CHECKS.",
    )


def _remote_user(path: str, factory: type) -> Iterator[tuple[int, str, str]]:
    if not _is_a(factory, REMOTE_USER_MIDDLEWARE):
        return
    yield (
        15,
        f"MIDDLEWARE has {path}: users are logged in by the web server's "
        "REMOTE_USER, which a WebSocket handshake does not carry, so the "
        "gateway's authorization GET would never see who they are.",
        "Log users in with sessions (PersistentRemoteUserMiddleware keeps the "
        "login in the session: then add 'pushy.E015' to SILENCED_SYSTEM_CHECKS), "
        + OWN_RULE,
    )


def _session_engine() -> Iterator[tuple[int, str, str]]:
    if settings.SESSION_ENGINE not in CACHE_SESSION_ENGINES:
        return
    caches = getattr(settings, "CACHES", {})
    backend = caches.get(settings.SESSION_CACHE_ALIAS, {}).get("BACKEND", "")
    if backend not in PRIVATE_CACHES:
        return
    yield (
        16,
        f"SESSION_ENGINE keeps sessions in the cache {settings.SESSION_CACHE_ALIAS!r}, "
        f"a {backend.rsplit('.', 1)[-1]} that each process has to itself: the "
        "gateway cannot read the sessions the site writes, so every subscriber "
        "would be asked about as an anonymous visitor.",
        "Point SESSION_CACHE_ALIAS at a cache the processes share (Redis, "
        "Memcached), or use the 'db' or 'cached_db' session engine.",
    )


def _is_a(factory: type, dotted: str) -> bool:
    """Whether ``factory`` is the class named ``dotted`` or a subclass of it."""
    return any(
        f"{cls.__module__}.{cls.__qualname__}" == dotted for cls in factory.__mro__
    )
