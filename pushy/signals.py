"""Receivers that turn saves and deletes of configured models into updates.

They are connected for every sender and filter by ``MODELS`` on each signal, so
changing ``PUSHY_SETTINGS`` (``override_settings`` in tests) takes effect at once.

A save or delete never fails because of pushy, and its subscribers always hear
of it. An update that cannot be built as it should (a model method raised, or
returned something pushy refuses, or the update is over ``MAX_UPDATE_BYTES``)
is replaced (``updates.build_or_refuse``): by the same update without its data,
so that pages refetch the object, or, when not even its URL is known, by a
resync of every page. The refusal is logged (the first of a kind at once, then
at most a line a minute, pushy/refusals.py) and counted, in ``failures`` per
model and in ``refusals.counts`` per reason.
"""

from __future__ import annotations

import collections
import logging
from typing import Any

from django.apps import apps
from django.db import models, router
from django.db.models.signals import post_delete, post_init, post_save

from pushy import conf
from pushy.api import is_pushed
from pushy.captured import is_captured
from pushy.messages import CREATE, DELETE, UPDATE
from pushy.publisher import note_refusal, publish_on_commit
from pushy.updates import Refusal, build_or_refuse, remember_loaded

logger = logging.getLogger(__name__)

# Updates that could not be built as they should, per model label, since the
# process started.
failures: collections.Counter[str] = collections.Counter()


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
    """What ``pushy.notify`` does, except that nothing raises into the save."""
    try:
        if using is None:
            using = router.db_for_write(type(instance), instance=instance)
        if is_captured(instance, using):
            return  # the capture process publishes its changes
        built = build_or_refuse(instance, event)
        if event != DELETE:
            remember_loaded(instance)  # the next save's "was"
        if isinstance(built, Refusal):
            failures[built.model] += 1
            note_refusal(built)
        publish_on_commit([built], using=using)
    except Exception:  # pushy's own bug: the change stands, say so loudly
        logger.exception(
            "pushy could not queue the %s of %s pk=%s", event, instance, instance.pk
        )


def on_init(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    """A declared model's object loaded (or made): keep its visibility values."""
    remember_loaded(instance)


def connect() -> None:
    post_save.connect(on_save, dispatch_uid="pushy.signals.on_save")
    post_delete.connect(on_delete, dispatch_uid="pushy.signals.on_delete")
    # Only the models in VISIBILITY_FIELDS pay for this, at every load.
    for label in conf.visibility_labels():
        try:
            model = apps.get_model(label)
        except (LookupError, ValueError):
            continue  # pushy.E051 says so
        post_init.connect(on_init, sender=model, dispatch_uid=f"pushy.on_init.{label}")
