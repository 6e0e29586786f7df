"""Which models are captured by triggers (``CAPTURE``), read beside pushy/conf.py.

The signal receivers ask on every save whether triggers publish a change
instead; the answer needs only settings and the database's vendor, so the
publishing side does not import pushy/capture/ (nor psycopg).
"""

from __future__ import annotations

import functools
from typing import Any

from django.core.signals import setting_changed
from django.db import connections, models

from pushy import conf
from pushy.updates import model_label


def capture_alias() -> str:
    """The database alias whose tables carry the triggers."""
    return conf.get("CAPTURE_DATABASE")


@functools.cache
def captured_labels() -> frozenset[str]:
    """Labels of the models captured by triggers (``CAPTURE``, within ``MODELS``)."""
    wanted = conf.get("CAPTURE")
    pushed = conf.model_labels()
    if wanted is True:
        return pushed
    if not isinstance(wanted, (list, tuple)):
        return frozenset()
    return (
        frozenset(label.lower() for label in wanted if isinstance(label, str)) & pushed
    )


def is_postgresql(alias: str) -> bool:
    return alias in connections.settings and connections[alias].vendor == "postgresql"


def is_captured(model: type[models.Model] | models.Model, using: str | None) -> bool:
    """Whether a change of ``model`` on ``using`` reaches browsers through triggers.

    Then the signal path must not publish it too. Other databases, and models
    not in ``CAPTURE``, keep the signal path.
    """
    labels = captured_labels()
    if not labels or model_label(model) not in labels:
        return False
    alias = capture_alias()
    return (using or "default") == alias and is_postgresql(alias)


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == conf.SETTING_NAME:
        captured_labels.cache_clear()


setting_changed.connect(_on_setting_changed, dispatch_uid="pushy.captured.reset")
