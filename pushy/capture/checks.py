"""System checks for the capture settings, ``CAPTURE`` and ``CAPTURE_DATABASE``."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning
from django.core.checks import register as register_check

from pushy import conf


def check_capture(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    raw = conf.user_settings()
    if not isinstance(raw, dict):
        return []  # pushy.E001 says so
    alias = raw.get("CAPTURE_DATABASE", "default")
    messages = list(_database(alias))
    if raw.get("CAPTURE"):
        messages += _capture(raw["CAPTURE"])
        if not messages:
            messages += _backend(alias)
    return messages


def _capture(value: Any) -> Iterator[CheckMessage]:
    if value is True:
        return
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        yield Error(
            f"PUSHY_SETTINGS['CAPTURE'] must be True or a list of "
            f"'app_label.model_name' strings, not {value!r}.",
            hint="For example: 'CAPTURE': ['photosession.shot'], or True for "
            "every model in MODELS.",
            id="pushy.E040",
        )
        return
    pushed = conf.model_labels()
    for label in value:
        if not isinstance(label, str) or label.lower() not in pushed:
            yield Error(
                f"PUSHY_SETTINGS['CAPTURE'] names {label!r}, which is not in MODELS.",
                hint="Only pushed models can be captured: add it to MODELS too.",
                id="pushy.E041",
            )


def _database(alias: Any) -> Iterator[CheckMessage]:
    if not isinstance(alias, str) or alias not in settings.DATABASES:
        yield Error(
            f"PUSHY_SETTINGS['CAPTURE_DATABASE'] is {alias!r}, which is not an "
            "alias in DATABASES.",
            hint=f"One of: {', '.join(sorted(settings.DATABASES))}.",
            id="pushy.E042",
        )


def _backend(alias: str) -> Iterator[CheckMessage]:
    engine = settings.DATABASES[alias].get("ENGINE", "")
    if "postgresql" not in engine and "postgis" not in engine:
        yield Warning(
            f"PUSHY_SETTINGS['CAPTURE'] is set, but the database {alias!r} is not "
            "PostgreSQL: its models keep the signal path.",
            hint="Capture needs PostgreSQL; on other databases, push QuerySet."
            "update() and bulk writes with pushy.notify_many().",
            id="pushy.W040",
        )
    elif importlib.util.find_spec("psycopg") is None:
        yield Error(
            "PUSHY_SETTINGS['CAPTURE'] is set, but psycopg 3 is not installed.",
            hint="manage.py pushy_capture LISTENs through psycopg 3: "
            "pip install 'django-pushy[postgres]'.",
            id="pushy.E043",
        )


def register() -> None:
    register_check(check_capture, "pushy")
