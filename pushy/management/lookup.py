"""Finding the object a management command names, with errors that say the fix."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from django.db import models

from pushy import conf
from pushy.checks import closest


def load_object(label: str, pk: Any) -> models.Model:
    """The object ``pk`` of model ``label``; CommandError naming the expected form."""
    try:
        model = apps.get_model(label)
    except (LookupError, ValueError):
        raise CommandError(unknown_model(label)) from None
    try:
        return model._default_manager.get(pk=pk)
    except model.DoesNotExist:
        raise CommandError(f"{label} has no object with pk {pk!r}") from None
    except (ValueError, ValidationError) as e:
        raise CommandError(f"{pk!r} is not a valid pk for {label}: {e}") from e


def unknown_model(label: str) -> str:
    """Why ``label`` names no model, with the closest one when there is one."""
    labels = [m._meta.label_lower for m in apps.get_models()]
    pushed = sorted(conf.model_labels())
    guess = closest(label, pushed) or closest(label, labels)
    if guess is None and "." not in label:
        # A bare model name: find it in any app.
        names = {m._meta.model_name: m._meta.label_lower for m in apps.get_models()}
        guess = names.get(label.lower())
    message = f"unknown model {label!r}: expected app_label.model_name"
    if guess:
        return f"{message}; did you mean {guess!r}?"
    example = pushed[0] if pushed else "photosession.shot"
    return f"{message}, for example {example!r}"
