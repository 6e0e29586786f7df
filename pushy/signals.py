"""Receivers that turn saves and deletes of configured models into updates.

They are connected for every sender and filter by ``MODELS`` on each signal, so
changing ``PUSHY_SETTINGS`` (``override_settings`` in tests) takes effect at once.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models.signals import post_delete, post_save

from pushy.api import is_pushed, notify
from pushy.messages import CREATE, DELETE, UPDATE


def on_save(
    sender: type[models.Model],
    instance: models.Model,
    created: bool,
    raw: bool = False,
    using: str | None = None,
    **kwargs: Any,
) -> None:
    # raw: loaddata is restoring rows as they were, not changing them.
    if raw or not is_pushed(sender):
        return
    notify(instance, event=CREATE if created else UPDATE, using=using)


def on_delete(
    sender: type[models.Model],
    instance: models.Model,
    using: str | None = None,
    **kwargs: Any,
) -> None:
    if is_pushed(sender):
        notify(instance, event=DELETE, using=using)


def connect() -> None:
    post_save.connect(on_save, dispatch_uid="pushy.signals.on_save")
    post_delete.connect(on_delete, dispatch_uid="pushy.signals.on_delete")
