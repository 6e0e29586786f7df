"""pushy's settings: the one place that reads ``PUSHY_SETTINGS``.

Values are read lazily (never at import time), merged over ``DEFAULTS``, cached,
and the cache is dropped whenever Django reports a settings change, so
``override_settings`` works in tests. Validation with readable messages lives in
``pushy.checks``, which reports problems at start-up; code here only derives
values from settings that the checks accept.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings as django_settings
from django.core.signals import setting_changed

SETTING_NAME = "PUSHY_SETTINGS"

DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        # Models whose saves and deletes are pushed, as "app_label.model_name".
        "MODELS": (),
        # Where browsers reach the gateway; the WebSocket endpoint is <this>ws.
        "SOCKET_SERVER": "http://localhost:8888/",
        # Redis channel for a model is CHANNEL_PREFIX + "app_label.model_name".
        "CHANNEL_PREFIX": "pushy_",
        # Makes the browser client log to the console.
        "DEBUG": False,
        "REDIS_URL": "redis://localhost:6379/0",
        # Largest encoded update, in bytes; a larger one is refused at publish.
        "MAX_UPDATE_BYTES": 1024 * 1024,
        # Seconds between the gateway's PINGs on its Redis subscription; no answer
        # (or other traffic) within as long again drops and renews it.
        "REDIS_HEALTH_INTERVAL": 5,
        # Host patterns (as in ALLOWED_HOSTS) a WebSocket Origin may have. None:
        # ALLOWED_HOSTS without '*', the host of SOCKET_SERVER, localhost when DEBUG.
        "ALLOWED_ORIGINS": None,
        # Dotted path to f(user, url) -> bool, asked on subscribe and for each
        # object a subscriber is sent. None: pushy.authorization.can_get (the
        # user may GET the URL from the site); allow_all: anyone, anything.
        "AUTHORIZE": None,
        # Seconds an authorization decision and a session's user are cached;
        # a logout or a revoked permission takes effect within this.
        "AUTHORIZATION_TTL": 60,
        "MAX_SUBSCRIPTIONS": 1000,
        "MAX_MESSAGE_BYTES": 64 * 1024,
        # Seconds between protocol pings; a client silent until the next is closed.
        "PING_INTERVAL": 25,
        # The backlog bound of one client, in messages and in bytes: a client
        # whose backlog stays past it while more keeps coming is too slow.
        "SEND_QUEUE_SIZE": 1000,
        "SEND_QUEUE_BYTES": 1024 * 1024,
        # UTF-8 bytes of subscription URLs one connection may hold in total.
        "MAX_SUBSCRIPTION_BYTES": 256 * 1024,
        # Inbound messages per second per connection (token bucket refill rate).
        "RATE_LIMIT": 1000,
        # Seconds one socket write may stall before the client counts as too slow.
        "WRITE_TIMEOUT": 10,
        # Seconds a client has to complete the WebSocket handshake.
        "HANDSHAKE_TIMEOUT": 10,
        # Seconds a shutting-down gateway waits for its clients to close.
        "SHUTDOWN_TIMEOUT": 10,
        # Threads that run ORM work (sessions, AUTHORIZE) for the gateway.
        "DB_POOL_SIZE": 4,
        # Seconds an authorization question (a session read, a view run) may
        # run, and may wait for a thread, before its subscribe is refused.
        "AUTHORIZATION_TIMEOUT": 5,
        # Authorization questions that may wait per connection and per client
        # address (None: no per-address bound); past it a subscribe is refused.
        "MAX_QUESTIONS_PER_CONNECTION": 2,
        "MAX_QUESTIONS_PER_CLIENT": 100,
        # WebSocket connections one gateway process holds. None: derived from the
        # open-file limit, keeping descriptors in reserve (see gateway/admission.py).
        "MAX_CONNECTIONS": None,
        # WebSocket connections one client address may hold per process (an IPv6
        # client counts per /64). None: no per-client limit.
        "MAX_CONNECTIONS_PER_CLIENT": 1000,
        # Peers (IPs or CIDRs, or "unix") whose X-Forwarded-For / X-Real-IP give
        # the client's address; from any other peer those headers are ignored.
        "TRUSTED_PROXIES": (),
        # PostgreSQL change capture (issue 14): models whose every change
        # (update(), bulk writes, raw SQL) reaches browsers through triggers and
        # manage.py pushy_capture; True for all of MODELS. Those leave the signal path.
        "CAPTURE": (),
        # The database alias (PostgreSQL) whose tables carry the triggers.
        "CAPTURE_DATABASE": "default",
        # Seconds a URL's version is kept in Redis after its last change. A client
        # back after longer is sent a resync of that URL (its version may be gone).
        "VERSION_TTL": 24 * 60 * 60,
        # Seconds a save (its after-commit publish) waits for Redis to confirm its
        # updates; what is not confirmed by then stays queued and goes out in
        # order from the process's sender thread (pushy/sending.py).
        "PUBLISH_TIMEOUT": 0.05,
        # {"app_label.model_name": ["field", ...]}: the fields whose values decide
        # who may see that model's objects. A save of a model listed carries a
        # token of those values, and gateways ask again only when it changed; an
        # empty list: saves never change who may see it. Models not listed: every
        # save may change it, and every subscriber is asked again (exact, slower).
        "VISIBILITY_FIELDS": {},
    }
)

# Keys whose value must be a positive int (not bool).
INT_LIMITS = (
    "MAX_UPDATE_BYTES",
    "MAX_SUBSCRIPTIONS",
    "MAX_MESSAGE_BYTES",
    "SEND_QUEUE_SIZE",
    "SEND_QUEUE_BYTES",
    "MAX_SUBSCRIPTION_BYTES",
    "DB_POOL_SIZE",
    "VERSION_TTL",
    "MAX_QUESTIONS_PER_CONNECTION",
)
# Keys whose value must be a positive int, or None.
OPTIONAL_INT_LIMITS = (
    "MAX_CONNECTIONS",
    "MAX_CONNECTIONS_PER_CLIENT",
    "MAX_QUESTIONS_PER_CLIENT",
)
# Keys whose value must be a positive number of seconds (or per second).
NUMBER_LIMITS = (
    "REDIS_HEALTH_INTERVAL",
    "AUTHORIZATION_TTL",
    "AUTHORIZATION_TIMEOUT",
    "PING_INTERVAL",
    "RATE_LIMIT",
    "WRITE_TIMEOUT",
    "HANDSHAKE_TIMEOUT",
    "SHUTDOWN_TIMEOUT",
    "PUBLISH_TIMEOUT",
)


def user_settings() -> Any:
    """The raw ``PUSHY_SETTINGS`` value, for the system checks."""
    return getattr(django_settings, SETTING_NAME, {})


def lookalike_setting_names() -> list[str]:
    """Django settings named like ``PUSHY_SETTINGS`` that are not it (typos)."""
    found = []
    for name in dir(django_settings):
        if not name.isupper() or name == SETTING_NAME:
            continue
        similar = difflib.SequenceMatcher(None, name, SETTING_NAME).ratio() >= 0.8
        if name.startswith("PUSHY") or similar:
            found.append(name)
    return found


APP_MISSING = (
    "PUSHY_SETTINGS is set but 'pushy' is not in INSTALLED_APPS: saves push "
    "nothing, {% load pushy_tags %} is 'not a registered tag library' and "
    'runpushy is an unknown command. Add "pushy" to INSTALLED_APPS.'
)


def app_missing() -> str | None:
    """Why nothing is pushed when ``PUSHY_SETTINGS`` is set but the app is not
    installed (its ``ready()`` connects the signals), else None.

    For the code that runs anyway (the pytest plugin, ``pushy.api``): Django's
    checks and commands never see an app that is not installed.
    """
    from django.apps import apps

    if not django_settings.configured or not apps.ready:
        return None
    if not hasattr(django_settings, SETTING_NAME) or apps.is_installed("pushy"):
        return None
    return APP_MISSING


@functools.cache
def _merged() -> Mapping[str, Any]:
    raw = user_settings()
    user = raw if isinstance(raw, Mapping) else {}
    return MappingProxyType({**DEFAULTS, **user})


def get(key: str) -> Any:
    """One setting's value, the user's or the default."""
    if key not in DEFAULTS:
        raise KeyError(f"{key!r} is not a pushy setting")
    return _merged()[key]


@functools.cache
def model_labels() -> frozenset[str]:
    """The configured models' labels, lower-cased as Django's model_name is."""
    models = get("MODELS")
    if isinstance(models, str):
        models = [models]
    return frozenset(label.lower() for label in models if isinstance(label, str))


@functools.cache
def _visibility_fields() -> Mapping[str, tuple[str, ...]]:
    value = get("VISIBILITY_FIELDS")
    if not isinstance(value, Mapping):
        return {}  # the checks report it
    return {
        label.lower(): tuple(fields)
        for label, fields in value.items()
        if isinstance(label, str) and isinstance(fields, (list, tuple))
    }


def visibility_labels() -> list[str]:
    """The models named in VISIBILITY_FIELDS."""
    return list(_visibility_fields())


def visibility_fields(label: str) -> tuple[str, ...] | None:
    """The fields deciding who may see ``label``'s objects; None: not declared."""
    return _visibility_fields().get(label)


def websocket_url(socket_server: str | None = None) -> str:
    """The WebSocket endpoint for a ``SOCKET_SERVER`` (http->ws, https->wss, + 'ws')."""
    parts = urlsplit(socket_server or get("SOCKET_SERVER"))
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return urlunsplit((scheme, parts.netloc, path + "ws", "", ""))


LOCALHOST = ["localhost", "127.0.0.1", "[::1]"]


def allowed_origins() -> list[str]:
    """Host patterns an Origin header may match (any port; see docs/settings.md).

    Unset, they are derived: ``ALLOWED_HOSTS`` without ``'*'`` (a wildcard host
    is often set behind a proxy, and must not let every web page in with its
    visitors' cookies), the host of ``SOCKET_SERVER``, and localhost when
    ``DEBUG``. Explicit patterns such as ``'.example.com'`` are kept.
    """
    configured = get("ALLOWED_ORIGINS")
    if configured is not None:
        return list(configured)
    hosts = [host for host in django_settings.ALLOWED_HOSTS if host != "*"]
    hosts.append(socket_server_host())
    if django_settings.DEBUG or get("DEBUG"):
        hosts += LOCALHOST
    return list(dict.fromkeys(host for host in hosts if host))


def wildcard_host_dropped() -> bool:
    """Whether ``'*'`` in ALLOWED_HOSTS was left out of the derived origins."""
    return get("ALLOWED_ORIGINS") is None and "*" in django_settings.ALLOWED_HOSTS


def socket_server_host() -> str:
    """The host of ``SOCKET_SERVER`` as a host pattern ('' if it has none)."""
    try:
        host = urlsplit(get("SOCKET_SERVER")).hostname or ""
    except (TypeError, ValueError, AttributeError):
        return ""  # A malformed value; the system checks report it.
    return f"[{host}]" if ":" in host else host


def reset() -> None:
    """Forget cached values; the next read sees the current Django settings."""
    _merged.cache_clear()
    model_labels.cache_clear()
    _visibility_fields.cache_clear()


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in (SETTING_NAME, "ALLOWED_HOSTS", "DEBUG"):
        reset()


setting_changed.connect(_on_setting_changed, dispatch_uid="pushy.conf.reset")
