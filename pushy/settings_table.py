"""Every key of ``PUSHY_SETTINGS``, declared once: name, default, check, doc.

``pushy.conf`` takes its defaults from here and ``pushy.checks`` looks up each
key's check here; tests/test_settings_table.py keeps docs/settings.md and the
README's table in step. A new setting is one line below, one row in
docs/settings.md (and, if it matters to most sites, one in the README).

This module imports nothing of pushy or Django, so anything may import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

# How a value is checked: the names pushy.checks maps to its check functions.
POSITIVE_INT = "positive int"
NON_NEGATIVE_INT = "non-negative int"
OPTIONAL_POSITIVE_INT = "positive int or None"
POSITIVE_NUMBER = "positive number"
AT_LEAST_ONE_SECOND = "positive number, at least 1"
BOOL = "bool"
MODELS = "model labels"
HTTP_URL = "http(s) URL"
REDIS_URL = "Redis URL"
CHANNEL_PREFIX = "channel prefix"
DOTTED_PATH = "dotted path or None"
HOST_PATTERNS = "host patterns or None"
PROXIES = "addresses, networks or 'unix'"
VISIBILITY = "model labels to field names"
# Checked beside DATABASES by pushy.capture.checks (E040-E043, W040).
CAPTURE = "capture"

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True)
class Setting:
    """One key of ``PUSHY_SETTINGS``."""

    name: str
    default: Any
    check: str  # one of the names above
    doc: str  # one line; docs/settings.md says the rest


# In the order the unknown-key check (pushy.E002) lists them.
SETTINGS: tuple[Setting, ...] = (
    Setting(
        "MODELS",
        (),
        MODELS,
        'Models whose saves and deletes are pushed, as "app_label.model_name".',
    ),
    Setting(
        "SOCKET_SERVER",
        "http://localhost:8888/",
        HTTP_URL,
        "Where browsers reach the gateway; the WebSocket endpoint is <this>ws.",
    ),
    Setting(
        "CHANNEL_PREFIX",
        "pushy_",
        CHANNEL_PREFIX,
        'The Redis channel of a model is CHANNEL_PREFIX + "app_label.model_name".',
    ),
    Setting("DEBUG", False, BOOL, "Makes the browser client log to the console."),
    Setting(
        "REDIS_URL",
        "redis://localhost:6379/0",
        REDIS_URL,
        "The Redis that web processes publish to and gateways listen to.",
    ),
    Setting(
        "MAX_UPDATE_BYTES",
        MiB,
        POSITIVE_INT,
        "Largest encoded update, in bytes; a larger one is refused at publish.",
    ),
    Setting(
        "REDIS_HEALTH_INTERVAL",
        5,
        POSITIVE_NUMBER,
        "Seconds of silence on the gateway's Redis subscription before a PING; "
        "no answer within as long again drops and renews it.",
    ),
    Setting(
        "ALLOWED_ORIGINS",
        None,
        HOST_PATTERNS,
        "Host patterns a WebSocket Origin may have. None: ALLOWED_HOSTS without "
        "'*', the host of SOCKET_SERVER, localhost when DEBUG.",
    ),
    Setting(
        "AUTHORIZE",
        None,
        DOTTED_PATH,
        "Dotted path to f(user, url) -> bool. None: whoever may GET the URL from "
        "the site (pushy.authorization.can_get).",
    ),
    Setting(
        "AUTHORIZATION_TTL",
        60,
        POSITIVE_NUMBER,
        "Seconds an authorization decision and a session's user are cached.",
    ),
    Setting(
        "MAX_SUBSCRIPTIONS",
        1000,
        POSITIVE_INT,
        "Subscriptions one connection may hold.",
    ),
    Setting(
        "MAX_MESSAGE_BYTES",
        64 * KiB,
        POSITIVE_INT,
        "Largest message a client may send, in bytes.",
    ),
    Setting(
        "PING_INTERVAL",
        25,
        AT_LEAST_ONE_SECOND,
        "Seconds between protocol pings; a client silent until the next is closed.",
    ),
    Setting(
        "SEND_QUEUE_SIZE",
        1000,
        POSITIVE_INT,
        "Backlog of one client, in messages, past which it is too slow.",
    ),
    Setting(
        "SEND_QUEUE_BYTES",
        MiB,
        POSITIVE_INT,
        "Backlog of one client, in bytes, past which it is too slow.",
    ),
    Setting(
        "MAX_SUBSCRIPTION_BYTES",
        256 * KiB,
        POSITIVE_INT,
        "UTF-8 bytes of subscription URLs one connection may hold in total.",
    ),
    Setting(
        "RATE_LIMIT",
        1000,
        POSITIVE_NUMBER,
        "Inbound frames per second per connection (token bucket refill rate).",
    ),
    Setting(
        "WRITE_TIMEOUT",
        10,
        POSITIVE_NUMBER,
        "Seconds one socket write may stall before the client counts as too slow.",
    ),
    Setting(
        "HANDSHAKE_TIMEOUT",
        10,
        POSITIVE_NUMBER,
        "Seconds a client has to complete the WebSocket handshake.",
    ),
    Setting(
        "SHUTDOWN_TIMEOUT",
        10,
        POSITIVE_NUMBER,
        "Seconds a shutting-down gateway waits for its clients to close.",
    ),
    Setting(
        "DB_POOL_SIZE",
        4,
        POSITIVE_INT,
        "Threads that run ORM work (sessions, AUTHORIZE) for the gateway.",
    ),
    Setting(
        "AUTHORIZATION_TIMEOUT",
        5,
        POSITIVE_NUMBER,
        "Seconds an authorization question may run, or wait for a thread.",
    ),
    Setting(
        "MAX_QUESTIONS_PER_CONNECTION",
        2,
        POSITIVE_INT,
        "Authorization questions one connection may have waiting or running.",
    ),
    Setting(
        "MAX_QUESTIONS_PER_CLIENT",
        100,
        OPTIONAL_POSITIVE_INT,
        "Authorization questions waiting per client address. None: no bound.",
    ),
    Setting(
        "MAX_CONNECTIONS",
        None,
        OPTIONAL_POSITIVE_INT,
        "WebSocket connections one gateway process holds. None: from the "
        "open-file limit (gateway/admission.py).",
    ),
    Setting(
        "MAX_CONNECTIONS_PER_CLIENT",
        1000,
        OPTIONAL_POSITIVE_INT,
        "WebSocket connections one client address (IPv6: /64) may hold per "
        "process. None: no per-client limit.",
    ),
    Setting(
        "TRUSTED_PROXIES",
        (),
        PROXIES,
        'Peers (IPs, CIDRs or "unix") whose X-Forwarded-For / X-Real-IP give the '
        "client's address.",
    ),
    Setting(
        "CAPTURE",
        (),
        CAPTURE,
        "PostgreSQL: models whose every change reaches browsers through triggers "
        "and manage.py pushy_capture; True for all of MODELS.",
    ),
    Setting(
        "CAPTURE_DATABASE",
        "default",
        CAPTURE,
        "The database alias (PostgreSQL) whose tables carry the capture triggers.",
    ),
    Setting(
        "VERSION_TTL",
        24 * 60 * 60,
        POSITIVE_INT,
        "Seconds a URL's version is kept in Redis after its last change.",
    ),
    Setting(
        "HISTORY_LENGTH",
        1000,
        NON_NEGATIVE_INT,
        "Updates kept per version book for returning clients to replay; 0: none.",
    ),
    Setting(
        "HISTORY_SECONDS",
        120,
        POSITIVE_INT,
        "Seconds an update stays in the replay history at most.",
    ),
    Setting(
        "PUBLISH_TIMEOUT",
        0.05,
        POSITIVE_NUMBER,
        "Seconds a save waits for Redis to confirm its updates; the rest stays "
        "queued and goes out in order.",
    ),
    Setting(
        "VISIBILITY_FIELDS",
        {},
        VISIBILITY,
        '{"app_label.model_name": ["field", ...]}: the fields whose values decide '
        "who may see that model's objects.",
    ),
    Setting(
        "PRESENCE_NAME",
        None,
        DOTTED_PATH,
        "Dotted path to f(user) -> str, how a present user is named. None: the "
        "username.",
    ),
    Setting(
        "PRESENCE_LIMIT",
        20,
        POSITIVE_INT,
        "People a presence message names at most (its count says how many are there).",
    ),
    Setting(
        "PRESENCE_HEARTBEAT",
        5,
        POSITIVE_NUMBER,
        "Seconds between a gateway's presence heartbeats; a stopped gateway's "
        "members leave within 4 of them.",
    ),
)

BY_NAME: Mapping[str, Setting] = MappingProxyType(
    {setting.name: setting for setting in SETTINGS}
)
