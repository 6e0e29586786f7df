"""pushy's settings: the one place that reads ``PUSHY_SETTINGS``.

Values are read lazily (never at import time), merged over ``DEFAULTS``, cached,
and the cache is dropped whenever Django reports a settings change, so
``override_settings`` works in tests. The keys, their defaults and how each is
checked are declared once, in ``pushy.settings_table``. Validation with readable
messages lives in ``pushy.checks``, which reports problems at start-up; code here
only derives values from settings that the checks accept.
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

from pushy.settings_table import SETTINGS

SETTING_NAME = "PUSHY_SETTINGS"

# Every key and its default, from the one table of settings (its checks and docs
# are declared beside them there).
DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {setting.name: setting.default for setting in SETTINGS}
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
