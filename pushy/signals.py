"""Receivers that turn saves and deletes of configured models into updates.

They are connected for every sender and filter by ``MODELS`` on each signal, so
changing ``PUSHY_SETTINGS`` (``override_settings`` in tests) takes effect at once.

A save or delete never fails because of pushy: an update that cannot be built
(a model method raised, or returned something pushy refuses, see InvalidUpdate)
is logged (in full the first time for each model, then at growing intervals)
and counted in ``failures``, and not published; the change itself stands.
"""

from __future__ import annotations

import collections
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
    except Exception as e:
        # The model's own method failed, or returned what pushy cannot publish;
        # the save already happened and stands.
        _report(model_label(instance), instance.pk, event, e)


# Updates that could not be built, per model label, since the process started.
failures: collections.Counter[str] = collections.Counter()


def _report(label: str, pk: Any, event: str, error: Exception) -> None:
    """Log the first failure of a model in full, then only at powers of ten."""
    failures[label] += 1
    count = failures[label]
    if count == 1:
        if isinstance(error, InvalidUpdate):
            logger.error("pushy did not publish a %s of %s: %s", event, label, error)
        else:
            logger.error(
                "pushy did not publish a %s of %s pk=%s: building its update "
                "raised; fix the model method in the traceback (the save stood, "
                "only the push was lost)",
                event,
                label,
                pk,
                exc_info=error,
            )
    elif str(count).rstrip("0") == "1":  # 10, 100, 1000...
        logger.error(
            "pushy still cannot publish updates of %s (%d so far, the last: %s)",
            label,
            count,
            error,
        )


def connect() -> None:
    post_save.connect(on_save, dispatch_uid="pushy.signals.on_save")
    post_delete.connect(on_delete, dispatch_uid="pushy.signals.on_delete")
