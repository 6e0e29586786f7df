"""Which URL stands for an object, and which for the collection it is in.

An object's URL is the key pages subscribe to: its ``get_api_url()``, or, for a
model without one, its ``get_absolute_url()``. Any URL whose GET answers 2xx to
those who may see the object will do: the gateway asks that GET who may
subscribe. A collection is the model's ``get_api_list_url()``, else the parent
of the object's URL (``/shots/3/`` is in ``/shots/``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.db import models
from django.urls import Resolver404, resolve

from pushy.exceptions import InvalidUpdate

# The methods that give an object's URL, the first a model has wins.
URL_METHODS = ("get_api_url", "get_absolute_url")
LIST_METHOD = "get_api_list_url"


def url_method(model: type[models.Model] | models.Model) -> str | None:
    """The name of the method giving ``model``'s object URLs, or None."""
    for name in URL_METHODS:
        if callable(getattr(model, name, None)):
            return name
    return None


def object_url(instance: models.Model) -> str:
    """The URL pages subscribe to for ``instance``; InvalidUpdate if none."""
    name = url_method(instance)
    if name is None:
        raise InvalidUpdate(
            f"{instance._meta.label_lower} has neither get_api_url() nor "
            "get_absolute_url(): add one that returns the object's URL (pushy's "
            "subscription key), or take the model out of PUSHY_SETTINGS['MODELS']"
        )
    return returned(instance, name, getattr(instance, name)())


def collection_url(instance: models.Model, url: str) -> str | None:
    """The collection ``instance`` belongs to: ``get_api_list_url()`` or the parent."""
    get_list_url = getattr(instance, LIST_METHOD, None)
    if callable(get_list_url):
        return returned(instance, LIST_METHOD, get_list_url(), optional=True)
    return parent_url(url)


def parent_url(url: str) -> str | None:
    """The collection an object URL sits in: ``/api/shot/3/`` -> ``/api/shot/``."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if "/" not in path:
        return None
    parent = path.rsplit("/", 1)[0] + "/"
    if parent == "/":
        return None
    return urlunsplit((parts.scheme, parts.netloc, parent, "", ""))


def without_query(url: str) -> str:
    """``url`` less its query string: what a filtered list hears of.

    A subscription to ``/api/order/?status=open`` hears of every member of
    ``/api/order/`` (each gated by the member's own authorization, the list by
    the whole URL), and its version is that collection's.
    """
    query = url.find("?")
    return url if query < 0 else url[:query]


def model_collection_url(objects: Any) -> str:
    """The collection URL of a QuerySet's model (or a model class), for a list.

    The first member's collection when there is one (a QuerySet already
    evaluated is not queried again); else the model's ``get_api_list_url()``
    on an unsaved instance; else the parent of the URL of an unsaved instance
    whose pk is 1, when that URL resolves. ValueError, saying what to add, when
    none of these gives one.
    """
    model, member = _model_and_member(objects)
    label = model._meta.label_lower
    if member is not None:
        url = collection_url(member, object_url(member))
    elif callable(getattr(model, LIST_METHOD, None)):
        url = collection_url(model(), "")
    else:
        url = _probed_collection(model)
    if not url:
        raise ValueError(
            f"cannot tell the collection URL of {label}: add a get_api_list_url() "
            "method to the model (its objects' URL depends on more than the pk, "
            "or has no parent)"
        )
    return url


def _model_and_member(objects: Any) -> tuple[type[models.Model], Any]:
    if isinstance(objects, type) and issubclass(objects, models.Model):
        return objects, None
    if isinstance(objects, models.QuerySet):
        cached = objects._result_cache
        if cached is not None:
            member = cached[0] if cached else None
        else:
            member = next(iter(objects[:1]), None)
        if member is not None and not isinstance(member, models.Model):
            member = None  # .values() or .values_list(): no instances to ask
        return objects.model, member
    raise TypeError(f"not a QuerySet or a model class: {objects!r}")


def _probed_collection(model: type[models.Model]) -> str | None:
    """The parent of a sample object's URL, if the URLconf knows that URL."""
    if url_method(model) is None:
        return None
    sample = model(pk=1)
    try:
        url = object_url(sample)
        resolve(urlsplit(url).path)
    except (InvalidUpdate, Resolver404):
        return None
    except Exception:  # the URL needs more than the pk (a related object, a slug)
        return None
    return parent_url(url)


def returned(
    instance: models.Model, method: str, value: Any, optional: bool = False
) -> str | None:
    """``value`` if it is a str (or None when ``optional``); else InvalidUpdate."""
    if isinstance(value, str) or (optional and value is None):
        return value
    expected = "a str or None" if optional else "a str"
    raise InvalidUpdate(
        f"{instance._meta.label_lower}.{method}() returned {a_type(value)}, "
        f"not {expected}"
    )


def a_type(value: Any) -> str:
    """``value``'s type with its article, for messages: "a list", "an int", "None"."""
    if value is None:
        return "None"
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"
