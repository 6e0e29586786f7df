"""Building an Update from a model instance, and refusing what cannot be published.

The publishing side's half of pushy/messages.py: the URL and collection
(pushy/object_urls.py), ``get_pushy_data()``, the visibility tokens, the size
check against ``MAX_UPDATE_BYTES``, and the Refusal that stands for an update
that could not be built as it was.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from pushy import conf
from pushy.exceptions import InvalidUpdate
from pushy.messages import CREATE, DELETE, UPDATE, Update
from pushy.object_urls import a_type, collection_url, object_url

logger = logging.getLogger(__name__)


def model_label(model: type[models.Model] | models.Model) -> str:
    """``"app_label.model_name"`` for a model class or instance."""
    meta = model._meta
    return f"{meta.app_label}.{meta.model_name}"


def _json_pk(pk: Any) -> Any:
    # JSON keeps ints and strings as they are; UUIDs and others travel as text.
    if isinstance(pk, (int, str)) and not isinstance(pk, bool):
        return pk
    return str(pk)


def _data(instance: models.Model) -> dict[str, Any] | None:
    get_data = getattr(instance, "get_pushy_data", None)
    if not callable(get_data):
        return None
    value = get_data()
    if value is None:
        return None
    where = f"{model_label(instance)}.get_pushy_data()"
    if not isinstance(value, dict):
        raise InvalidUpdate(f"{where} returned {a_type(value)}, not a dict")
    # Round trip now, so dates and decimals are fixed as they were at save time.
    try:
        text = json.dumps(value, cls=DjangoJSONEncoder, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as e:
        raise InvalidUpdate(f"{where} returned a dict that is not JSON: {e}") from e
    return json.loads(text)


class UpdateTooLarge(InvalidUpdate):
    """An update whose body is over ``MAX_UPDATE_BYTES``."""


def checked_body(update: Update) -> bytes:
    """The Redis body of ``update``; InvalidUpdate if it is not JSON or too large.

    The bound is ``MAX_UPDATE_BYTES``: a larger update is never published, since
    gateways would drop it and no browser should receive it.
    """
    body = update.encode()
    limit = conf.get("MAX_UPDATE_BYTES")
    if len(body) > limit:
        raise UpdateTooLarge(
            f"update of {update.model} pk={update.pk} is {len(body):,} bytes, over "
            f"MAX_UPDATE_BYTES ({limit:,}); send less in get_pushy_data()"
        )
    return body


def visibility_token(instance: models.Model) -> str | None:
    """A short hash of the values of ``instance``'s VISIBILITY_FIELDS, as saved.

    None for a model not in VISIBILITY_FIELDS: any save may change who may see
    it. The same for every save of a model listed with no field ([]): saves
    never change who may see it. Gateways compare tokens only for equality.
    """
    names = conf.visibility_fields(model_label(instance))
    if names is None:
        return None
    return _token([getattr(instance, _attname(instance, name)) for name in names])


def _token(values: list[Any]) -> str:
    try:
        text = json.dumps(values, cls=DjangoJSONEncoder, sort_keys=True)
    except (TypeError, ValueError):
        text = repr(values)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


# Where an instance keeps its VISIBILITY_FIELDS' values as loaded (or last saved).
LOADED = "_pushy_visibility_loaded"


def remember_loaded(instance: models.Model) -> None:
    """Keep the values of ``instance``'s VISIBILITY_FIELDS as they are now (a
    load, a save), for the next save's ``visibility_was``. Nothing when one is
    deferred (reading it would query) or the model is not declared."""
    names = conf.visibility_fields(model_label(instance))
    if names is None:
        return
    state = instance.__dict__
    attnames = [_attname(instance, name) for name in names]
    if all(name in state for name in attnames):
        state[LOADED] = tuple(state[name] for name in attnames)
    else:
        state.pop(LOADED, None)


def _loaded_token(instance: models.Model) -> str | None:
    loaded = instance.__dict__.get(LOADED)
    return None if loaded is None else _token(list(loaded))


def _attname(instance: models.Model, name: str) -> str:
    """The attribute holding a field's stored value (``owner`` -> ``owner_id``)."""
    try:
        return instance._meta.get_field(name).attname
    except Exception:  # already an attname (the checks accept both)
        return name


def _tokens_for(instance: models.Model, event: str) -> dict[str, str | None]:
    """The visibility tokens of a save, as Update fields: the values saved, and
    (for an update) those loaded; none for a delete, or when they cannot be
    made (gateways then ask again: exact, not wrong)."""
    if event == DELETE:
        return {}
    try:
        was = _loaded_token(instance) if event == UPDATE else None
        return {"visibility": visibility_token(instance), "visibility_was": was}
    except Exception:
        logger.warning(
            "no visibility token for %s", model_label(instance), exc_info=True
        )
        return {}


def fold(previous: str | None, new: str) -> str | None:
    """One event meaning event ``previous`` then ``new`` of one object; None when
    nothing is left (made and deleted). How a transaction's updates (the
    publisher) and a batch of captured changes (capture) are merged."""
    if previous is None:
        return new
    if previous == CREATE:
        return None if new == DELETE else CREATE
    if previous == DELETE and new == CREATE:
        # Deleted and made again under the same pk: to a subscriber, it changed.
        return UPDATE
    return new


def build_update(instance: models.Model, event: str) -> Update:
    """The update for ``instance`` now (call before a delete clears its pk).

    Raises InvalidUpdate, naming the model and the method, when a method returns
    something that cannot be published; a method that raises lets it through.
    """
    url = object_url(instance)
    collection = collection_url(instance, url)
    update = Update(
        url=url,
        event=event,
        model=model_label(instance),
        pk=_json_pk(instance.pk),
        collection=collection,
        data=_data(instance),
        **_tokens_for(instance, event),
    )
    checked_body(update)
    return update


# Why an update was refused where it was built or published: the field of the
# refusal counter (docs/protocol.md, "Redis side").
TOO_LARGE = "too_large"  # over MAX_UPDATE_BYTES: published without data
DATA_FAILED = "data_failed"  # get_pushy_data() raised or returned junk: without data
URL_FAILED = "url_failed"  # the URL or collection is unknown: every page resyncs
INVALID = "invalid"  # anything else refused: without data, or every page resyncs
REASONS = (TOO_LARGE, DATA_FAILED, URL_FAILED, INVALID)


@dataclasses.dataclass(frozen=True, eq=False)
class Refusal:
    """An update pushy could not publish as built, and what goes out instead.

    ``stand_in`` is the same update without ``data`` (subscribers refetch the
    object); None when even that could not be built (its URL is unknown), and
    then every page is told to resync instead (``versions.LOSE_SCRIPT``).
    """

    reason: str
    model: str
    pk: Any
    event: str
    error: BaseException
    stand_in: Update | None = None


def build_or_refuse(instance: models.Model, event: str) -> Update | Refusal:
    """``build_update``, except that it never raises: a Refusal says what failed.

    For the signals: a save must stand, and its subscribers must hear of it.
    """
    label, pk = model_label(instance), _json_pk(instance.pk)
    try:
        url = object_url(instance)
        collection = collection_url(instance, url)
        bare = Update(
            url=url, event=event, model=label, pk=pk, collection=collection,
            **_tokens_for(instance, event),
        )  # fmt: skip
    except Exception as e:
        return Refusal(URL_FAILED, label, pk, event, e)
    try:
        data = _data(instance)
    except Exception as e:
        refused = checked_or_refused(bare)  # a URL too long to publish at all
        stand_in = refused if isinstance(refused, Update) else None
        return Refusal(DATA_FAILED, label, pk, event, e, stand_in)
    return checked_or_refused(bare.replace(data=data))


def checked_or_refused(update: Update) -> Update | Refusal:
    """``update`` if it can be published as it is, else its Refusal."""
    try:
        checked_body(update)
        return update
    except InvalidUpdate as e:
        reason = TOO_LARGE if isinstance(e, UpdateTooLarge) else INVALID
        return Refusal(reason, update.model, update.pk, update.event, e, _bare(update))


def _bare(update: Update) -> Update | None:
    """``update`` without data, if that can be published."""
    bare = update.replace(data=None)
    try:
        checked_body(bare)
    except InvalidUpdate:
        return None
    return bare
