"""Receivers that turn saves and deletes of configured models into updates.

They are connected for every sender and filter by ``MODELS`` on each signal, so
changing ``PUSHY_SETTINGS`` (``override_settings`` in tests) takes effect at once.

A save or delete never fails because of pushy: an update that cannot be built
(a model method raised, or returned something pushy refuses, see InvalidUpdate)
is logged and not published; the change itself stands.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import models
from django.db.models.signals import post_delete, post_save

from pushy.api import is_pushed, notify
from pushy.exceptions import InvalidUpdate
from pushy.messages import CREATE, DELETE, UPDATE, model_label

logger = logging.getLogger(__name__)


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
    _notify_quietly(instance, CREATE if created else UPDATE, using)


def on_delete(
    sender: type[models.Model],
    instance: models.Model,
    using: str | None = None,
    **kwargs: Any,
) -> None:
    if is_pushed(sender):
        _notify_quietly(instance, DELETE, using)


def _notify_quietly(instance: models.Model, event: str, using: str | None) -> None:
    try:
        notify(instance, event=event, using=using)
    except InvalidUpdate as e:
        logger.error("pushy did not publish a %s: %s", event, e)
    except Exception:
        # The model's own method failed; the save already happened and stands.
        logger.exception(
            "pushy did not publish a %s of %s pk=%s",
            event,
            model_label(instance),
            instance.pk,
        )


def connect() -> None:
    post_save.connect(on_save, dispatch_uid="pushy.signals.on_save")
    post_delete.connect(on_delete, dispatch_uid="pushy.signals.on_delete")
