"""System checks for ``PUSHY_SETTINGS`` and the configured models.

Every message names the setting and says what is wrong; ids are stable and
listed in docs/settings.md. Which check a key gets is declared in
``pushy.settings_table``. ``runpushy`` runs these before it serves.
"""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import SplitResult, urlsplit

import redis
from django.apps import apps
from django.core.checks import CheckMessage, Error
from django.core.checks import Warning as CheckWarning
from django.core.checks import register as register_check
from django.utils.module_loading import import_string

from pushy import conf, settings_table
from pushy.object_urls import url_method
from pushy.redis_clients import (
    CLUSTER_SCHEMES,
    SENTINEL_SCHEMES,
    parse_sentinel_url,
    redacted,
)

ID = "pushy.E{:03d}"
WARNING_ID = "pushy.W{:03d}"
GLOB_CHARACTERS = "*?[]\\"


def _error(number: int, msg: str, hint: str | None = None) -> Error:
    return Error(msg, hint=hint, id=ID.format(number))


def check_setting_name(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """A Django setting that looks like a misspelled PUSHY_SETTINGS (E020)."""
    return [
        _error(
            20,
            f"The setting {name} is not read by pushy.",
            hint=f"pushy reads only {conf.SETTING_NAME}: rename {name} to "
            f"{conf.SETTING_NAME}.",
        )
        for name in conf.lookalike_setting_names()
    ]


def _warning(number: int, msg: str, hint: str) -> CheckWarning:
    return CheckWarning(msg, hint=hint, id=WARNING_ID.format(number))


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    raw = conf.user_settings()
    if not isinstance(raw, dict):
        return [
            _error(
                1,
                f"PUSHY_SETTINGS must be a dict, not {type(raw).__name__}.",
                hint="PUSHY_SETTINGS = {'MODELS': ['app_label.model_name'], ...}",
            )
        ]
    errors = list(_unknown_keys(raw))
    for setting in settings_table.SETTINGS:
        if setting.name in raw:
            check = _CHECKS[setting.check]
            errors.extend(check(setting.name, raw[setting.name], raw))
    if not errors:
        errors.extend(_origin_warnings())
    return errors


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The choice ``name`` most likely meant, ignoring case; None if none is close."""
    by_lower = {choice.lower(): choice for choice in choices}
    if name.lower() in by_lower:
        return by_lower[name.lower()]
    close = difflib.get_close_matches(name.lower(), by_lower, n=1, cutoff=0.7)
    return by_lower[close[0]] if close else None


def _unknown_keys(raw: dict) -> Iterator[Error]:
    for key in raw:
        if key in conf.DEFAULTS:
            continue
        close = closest(str(key), conf.DEFAULTS)
        hint = f"Did you mean {close!r}?" if close else None
        known = ", ".join(conf.DEFAULTS)
        yield _error(
            2,
            f"PUSHY_SETTINGS has an unknown key {key!r}.",
            hint=hint or f"Known keys: {known}.",
        )


def _models(value: Any) -> Iterator[Error]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        yield _error(
            3,
            "PUSHY_SETTINGS['MODELS'] must be a list of "
            "'app_label.model_name' strings.",
            hint="For example: 'MODELS': ['photosession.shot'].",
        )
        return
    for label in value:
        yield from _model_label(label)


def _model_label(label: Any) -> Iterator[Error]:
    if not isinstance(label, str) or label.count(".") != 1:
        yield _error(
            3,
            f"PUSHY_SETTINGS['MODELS'] has {label!r}, which is not "
            "an 'app_label.model_name' string.",
            hint="For example: 'photosession.shot'.",
        )
        return
    try:
        model = apps.get_model(label)
    except LookupError:
        labels = [m._meta.label_lower for m in apps.get_models()]
        close = closest(label, labels)
        yield _error(
            4,
            f"PUSHY_SETTINGS['MODELS'] names {label!r}, "
            "which is not an installed model.",
            hint=f"Did you mean {close!r}?"
            if close
            else "Check the app label and model name, and that the app is in "
            "INSTALLED_APPS.",
        )
        return
    if url_method(model) is None:
        yield _error(
            5,
            f"PUSHY_SETTINGS['MODELS'] names {label!r}, but {model.__name__} has "
            "neither get_api_url() nor get_absolute_url().",
            hint="pushy uses the object's URL as the subscription key: add "
            "get_absolute_url() (or get_api_url(), which wins) to the model; any URL "
            "whose GET answers 2xx to those who may see the object will do.",
        )


def _socket_server(value: Any) -> Iterator[Error]:
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        yield _error(
            6,
            f"PUSHY_SETTINGS['SOCKET_SERVER'] is {value!r}, not an http:// or "
            "https:// URL with a host.",
            hint="For example: 'http://localhost:8888/' or 'https://example.com/pushy/'.",
        )
        return
    if not _port_ok(parts):
        yield _error(6, f"PUSHY_SETTINGS['SOCKET_SERVER'] has a bad port: {value!r}.")


REDIS_SCHEMES = ("redis", "rediss", "unix")


def _port_ok(parts: SplitResult) -> bool:
    try:
        return parts.port is None or parts.port > 0
    except ValueError:  # urlsplit checks the port only when it is read.
        return False


def _redis_url(value: Any) -> Iterator[Error]:
    hint = (
        "For example: 'redis://localhost:6379/0', 'rediss://...', 'unix:///path' "
        "'redis+sentinel://host:26379,host2:26379/service_name/0' "
        "or 'redis+cluster://host:7000,host2:7000'."
    )
    if isinstance(value, str) and value.startswith(CLUSTER_SCHEMES):
        yield from _cluster_url(value, hint)
        return
    if isinstance(value, str) and value.startswith(SENTINEL_SCHEMES):
        try:
            parse_sentinel_url(value)
        except ValueError as e:
            yield _error(7, f"PUSHY_SETTINGS['REDIS_URL'] {value!r}: {e}.", hint)
        return
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in REDIS_SCHEMES:
        yield _error(
            7, f"PUSHY_SETTINGS['REDIS_URL'] is {value!r}, not a Redis URL.", hint=hint
        )
        return
    if not _port_ok(parts):
        yield _error(7, f"PUSHY_SETTINGS['REDIS_URL'] has a bad port: {value!r}.", hint)
        return
    if parts.scheme != "unix" and not parts.hostname:
        yield _error(7, f"PUSHY_SETTINGS['REDIS_URL'] has no host: {value!r}.", hint)
    elif parts.scheme == "unix" and not parts.path:
        yield _error(7, f"PUSHY_SETTINGS['REDIS_URL'] has no path: {value!r}.", hint)


def _cluster_url(value: str, hint: str) -> Iterator[Error]:
    """A well-formed cluster URL; if its nodes answer, a cluster of Redis 7 (E017).

    Unreachable is no error here: the gateway and the publisher retry.
    """
    from pushy import redis_cluster

    try:
        redis_cluster.parse_cluster_url(value)
    except ValueError as e:
        yield _error(7, f"PUSHY_SETTINGS['REDIS_URL'] {value!r}: {e}.", hint)
        return
    try:
        cluster = redis_cluster.client(
            value, socket_connect_timeout=1, socket_timeout=2
        )
    except redis.RedisError as e:
        if "not enabled" not in str(e):  # nothing answered
            return
        problem = "its nodes are not in cluster mode"
    else:
        try:
            problem = redis_cluster.problem(cluster)
        except redis.RedisError:
            return
        finally:
            cluster.close()
    if problem:
        yield _error(
            17,
            f"PUSHY_SETTINGS['REDIS_URL'] {redacted(value)} names a Redis Cluster, "
            f"but {problem}.",
            "Cluster mode needs a Redis Cluster of Redis 7 or later (sharded "
            "pub/sub); for a single Redis use 'redis://host:6379/0'.",
        )


def _channel_prefix(value: Any) -> Iterator[Error]:
    if not isinstance(value, str) or not value:
        yield _error(8, "PUSHY_SETTINGS['CHANNEL_PREFIX'] must be a non-empty string.")
    elif any(c in value for c in GLOB_CHARACTERS):
        yield _error(
            8,
            f"PUSHY_SETTINGS['CHANNEL_PREFIX'] is {value!r}, which has a glob "
            "character (* ? [ ] \\).",
            hint="The gateway subscribes to the pattern CHANNEL_PREFIX + '*'; a glob "
            "character in the prefix would match other channels. Use letters, "
            "digits, '_', ':' or '.'.",
        )


# What each dotted-path key must name (the hint of its E009).
_DOTTED_PATH_HINTS = {
    "AUTHORIZE": "Give the dotted path of a function f(user, url) -> bool.",
    "PRESENCE_NAME": "Give the dotted path of a function f(user) -> str.",
}


def _dotted_path(name: str, value: Any, raw: dict) -> Iterator[Error]:
    if value is None:
        return
    if not isinstance(value, str):
        yield _error(9, f"PUSHY_SETTINGS[{name!r}] must be a dotted path string.")
        return
    try:
        func = import_string(value)
    except ImportError as e:
        yield _error(
            9,
            f"PUSHY_SETTINGS[{name!r}] is {value!r}, which does not import: {e}",
            hint=_DOTTED_PATH_HINTS.get(name),
        )
        return
    if not callable(func):
        yield _error(9, f"PUSHY_SETTINGS[{name!r}] {value!r} is not callable.")


def _bool(name: str, value: Any, raw: dict) -> Iterator[Error]:
    if not isinstance(value, bool):
        yield _error(
            11, f"PUSHY_SETTINGS[{name!r}] must be True or False, not {value!r}."
        )


def _allowed_origins(value: Any) -> Iterator[Error]:
    if value is None:
        return
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        yield _error(
            12,
            "PUSHY_SETTINGS['ALLOWED_ORIGINS'] must be a list of host patterns.",
            hint="Patterns as in ALLOWED_HOSTS: ['example.com', '.example.com'].",
        )
    elif not all(isinstance(item, str) for item in value):
        yield _error(12, "PUSHY_SETTINGS['ALLOWED_ORIGINS'] must hold only strings.")


def _origin_warnings() -> Iterator[CheckWarning]:
    """'*' means any host to Django, but never any WebSocket origin to pushy."""
    hint = (
        "Set PUSHY_SETTINGS['ALLOWED_ORIGINS'] to the hosts of the pages that use "
        "pushy, for example ['example.com', '.example.com']."
    )
    if conf.wildcard_host_dropped():
        allowed = ", ".join(conf.allowed_origins()) or "none"
        yield _warning(
            1,
            "ALLOWED_HOSTS contains '*', which pushy does not take to mean any "
            "WebSocket origin: browsers may connect only from pages on "
            f"{allowed}.",
            hint,
        )
    origins = conf.get("ALLOWED_ORIGINS")
    if origins is not None and "*" in origins:
        yield _warning(
            2,
            "PUSHY_SETTINGS['ALLOWED_ORIGINS'] contains '*': a page on any site "
            "may open a WebSocket with its visitors' session cookies and receive "
            "what they may see.",
            hint + " Keep '*' only for a gateway whose every update is public.",
        )


def _trusted_proxies(value: Any) -> Iterator[Error]:
    hint = "For example: ['127.0.0.1', '10.0.0.0/8', '::1'], or 'unix'."
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        yield _error(
            13, "PUSHY_SETTINGS['TRUSTED_PROXIES'] must be a list of addresses.", hint
        )
        return
    for entry in value:
        if entry == "unix":
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
        except (TypeError, ValueError):
            yield _error(
                13,
                f"PUSHY_SETTINGS['TRUSTED_PROXIES'] has {entry!r}, which is not an "
                "IP address, a network (CIDR) or 'unix'.",
                hint,
            )


VISIBILITY_HINT = (
    "For example: 'VISIBILITY_FIELDS': {'blog.post': ['published', 'owner']}: the "
    "fields whose values decide who may GET a post's URL ([] when none does)."
)


def _visibility_fields(value: Any, models: Any) -> Iterator[Error]:
    """VISIBILITY_FIELDS: a dict of labels in MODELS to lists of their fields."""
    if not isinstance(value, dict):
        yield _error(
            50,
            "PUSHY_SETTINGS['VISIBILITY_FIELDS'] must be a dict of "
            "'app_label.model_name' to lists of field names.",
            VISIBILITY_HINT,
        )
        return
    listed = {m.lower() for m in models or () if isinstance(m, str)}
    for label, fields in value.items():
        where = f"PUSHY_SETTINGS['VISIBILITY_FIELDS'][{label!r}]"
        if isinstance(fields, str) or not isinstance(fields, (list, tuple)):
            yield _error(50, f"{where} must be a list of field names.", VISIBILITY_HINT)
            continue
        if not isinstance(label, str) or label.lower() not in listed:
            yield _error(
                51,
                f"PUSHY_SETTINGS['VISIBILITY_FIELDS'] names {label!r}, which is not "
                "in PUSHY_SETTINGS['MODELS'].",
                hint="Only the models pushy publishes have updates to declare: add it "
                "to MODELS, or take it out of VISIBILITY_FIELDS.",
            )
            continue
        try:
            model = apps.get_model(label)
        except (LookupError, ValueError):
            continue  # MODELS' own check (E004) reports it
        yield from _visibility_field_names(where, model, fields)


def _visibility_field_names(where: str, model: Any, fields: Any) -> Iterator[Error]:
    concrete = {f.name for f in model._meta.concrete_fields}
    concrete |= {f.attname for f in model._meta.concrete_fields}
    for name in fields:
        if name not in concrete:
            close = closest(str(name), concrete)
            yield _error(
                52,
                f"{where} has {name!r}, which is not a field of "
                f"{model.__name__} stored in its table.",
                hint=f"Did you mean {close!r}?"
                if close
                else f"Its fields: {', '.join(sorted(concrete))}. Many-to-many "
                "fields cannot be listed: their changes are not saves.",
            )


def _positive_int(name: str, value: Any, raw: dict) -> Iterator[Error]:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        yield _error(
            10, f"PUSHY_SETTINGS[{name!r}] must be a positive int, not {value!r}."
        )


def _non_negative_int(name: str, value: Any, raw: dict) -> Iterator[Error]:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        yield _error(
            10,
            f"PUSHY_SETTINGS[{name!r}] must be a non-negative int, not {value!r}.",
        )


def _optional_positive_int(name: str, value: Any, raw: dict) -> Iterator[Error]:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        yield _error(
            10,
            f"PUSHY_SETTINGS[{name!r}] must be a positive int or None, not {value!r}.",
        )


def _positive_number(name: str, value: Any, raw: dict) -> Iterator[Error]:
    valid = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not valid or value <= 0:
        yield _error(
            10, f"PUSHY_SETTINGS[{name!r}] must be a positive number, not {value!r}."
        )


def _at_least_one_second(name: str, value: Any, raw: dict) -> Iterator[Error]:
    errors = list(_positive_number(name, value, raw))
    yield from errors
    if not errors and value < 1:
        yield _error(10, f"PUSHY_SETTINGS[{name!r}] must be at least 1 second.")


SettingCheck = Callable[[str, Any, dict], Iterable[CheckMessage]]


def _of_value(check: Callable[[Any], Iterable[CheckMessage]]) -> SettingCheck:
    """A check of the value alone, called as every check is (name, value, raw)."""
    return lambda name, value, raw: check(value)


# How each kind of check in pushy.settings_table is done; each yields its errors.
_CHECKS: dict[str, SettingCheck] = {
    settings_table.POSITIVE_INT: _positive_int,
    settings_table.NON_NEGATIVE_INT: _non_negative_int,
    settings_table.OPTIONAL_POSITIVE_INT: _optional_positive_int,
    settings_table.POSITIVE_NUMBER: _positive_number,
    settings_table.AT_LEAST_ONE_SECOND: _at_least_one_second,
    settings_table.BOOL: _bool,
    settings_table.MODELS: _of_value(_models),
    settings_table.HTTP_URL: _of_value(_socket_server),
    settings_table.REDIS_URL: _of_value(_redis_url),
    settings_table.CHANNEL_PREFIX: _of_value(_channel_prefix),
    settings_table.DOTTED_PATH: _dotted_path,
    settings_table.HOST_PATTERNS: _of_value(_allowed_origins),
    settings_table.PROXIES: _of_value(_trusted_proxies),
    settings_table.VISIBILITY: lambda name, value, raw: _visibility_fields(
        value, raw.get("MODELS")
    ),
    # pushy.capture.checks checks these beside DATABASES (its own registered check).
    settings_table.CAPTURE: lambda name, value, raw: (),
}


def check_site_get(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """What would make the default authorization's answer not the site's
    (E014-E016; docs/settings.md, "Authorization")."""
    raw = conf.user_settings()
    if not isinstance(raw, dict) or raw.get("AUTHORIZE") is not None:
        return []
    from pushy import site_checks

    return [_error(number, msg, hint) for number, msg, hint in site_checks.problems()]


def register() -> None:
    register_check(check_settings, "pushy")
    register_check(check_setting_name, "pushy")
    register_check(check_site_get, "pushy")
