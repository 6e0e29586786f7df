"""pushy's public Python API.

Signals cover ``save()`` and ``delete()``. For changes that send no signals
(``QuerySet.update()``, ``bulk_create()``, raw SQL), call ``notify`` or
``notify_many`` yourself; like the signals, they wait for the transaction to
commit and publish nothing if it rolls back. Models captured by PostgreSQL
triggers (``CAPTURE``) need neither: ``manage.py pushy_capture`` publishes every
change of theirs, so the signals and ``notify`` leave them alone (no duplicates).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable

from django.db import models, router

from pushy import conf
from pushy.captured import is_captured
from pushy.exceptions import ModelNotConfigured
from pushy.messages import UPDATE, Update
from pushy.publisher import publish, publish_on_commit
from pushy.updates import build_update, model_label

__all__ = ["notify", "notify_many", "broadcast", "is_pushed"]

logger = logging.getLogger(__name__)


def is_pushed(model: type[models.Model] | models.Model) -> bool:
    """Whether ``model`` is listed in ``PUSHY_SETTINGS["MODELS"]``."""
    return model_label(model) in conf.model_labels()


def _require_pushed(instance: models.Model) -> None:
    _warn_if_app_missing()
    if not is_pushed(instance):
        raise ModelNotConfigured(
            f"{model_label(instance)} is not in PUSHY_SETTINGS['MODELS']"
        )


@functools.cache
def _warn_if_app_missing() -> None:
    """Once per process: these calls publish, but saves would not."""
    problem = conf.app_missing()
    if problem:
        logger.warning("%s", problem)


def notify(
    instance: models.Model, event: str = UPDATE, using: str | None = None
) -> None:
    """Push ``event`` for ``instance`` once the current transaction commits."""
    notify_many([instance], event=event, using=using)


def notify_many(
    instances: Iterable[models.Model], event: str = UPDATE, using: str | None = None
) -> None:
    """Push ``event`` for each object (a queryset or any iterable) after commit.

    The updates are built now, so the URLs are those the objects have now.
    Raises ModelNotConfigured for an object whose model is not in ``MODELS``,
    and InvalidUpdate (nothing of the batch is queued) for an object whose
    methods return something pushy cannot publish, or too much data.
    Objects captured by triggers on ``using`` are skipped: the capture process
    publishes their changes.
    """
    updates = []
    for instance in instances:
        _require_pushed(instance)
        if using is None:
            using = router.db_for_write(type(instance), instance=instance)
        if is_captured(instance, using):
            continue
        updates.append(build_update(instance, event))
    if updates:
        publish_on_commit(updates, using=using)


def broadcast(instance: models.Model, event: str = UPDATE) -> tuple[Update, int]:
    """Publish ``event`` for ``instance`` at once, ignoring transactions.

    Returns the update and how many gateway processes received it. Raises
    ModelNotConfigured for a model not in ``MODELS``, InvalidUpdate for an update
    that cannot be published, and PublishError when Redis did not confirm it
    within ``sending.SYNC_TIMEOUT`` (see ``publisher.publish``: it waits behind
    updates already queued, never overtaking them). This is what
    ``manage.py pushy_test_broadcast`` does.
    """
    _require_pushed(instance)
    update = build_update(instance, event)
    (receivers,) = publish([update])
    return update, receivers
