"""The Update value: what changed, built from a model instance, and its wire form.

An update travels through Redis as JSON (without ``type``) on the channel
``CHANNEL_PREFIX + "app_label.model_name"``; the gateway adds ``"type": "update"``
when it hands it to browsers. See docs/protocol.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Iterable
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from pushy import conf
from pushy.exceptions import InvalidUpdate
from pushy.object_urls import a_type, collection_url, object_url

logger = logging.getLogger(__name__)

CREATE = "create"
UPDATE = "update"
DELETE = "delete"
EVENTS = (CREATE, UPDATE, DELETE)
# The body's keys; others (from a later version) are ignored by decode().
FIELDS = (
    "url", "event", "model", "pk", "collection", "data", "version", "visibility",
    "visibility_was", "published",
)  # fmt: skip
# Body keys that stay between publishers and gateways: never in a client's frame.
GATEWAY_ONLY = ("visibility", "visibility_was", "published")
# Bytes the sender's stamp adds to a body after its size check (',"published":'
# and a time to the ms).
PUBLISHED_ROOM = 32
REQUIRED = frozenset(("url", "event", "model", "pk"))


@dataclasses.dataclass(frozen=True)
class Update:
    """One change to one object, as published to Redis and pushed to browsers."""

    url: str
    event: str
    model: str
    pk: Any
    collection: str | None = None
    data: dict[str, Any] | None = None
    # Given in Redis when published (pushy/versions.py); None before.
    version: int | None = None
    # When the commit handed it to this process's sender (seconds since the
    # epoch, to the ms), for the gateways' delivery-lag histograms; never in
    # a browser's frame. None before, and from publishers older than 0.3.
    published: float | None = None
    # A token of the values that decide who may see the object, for models in
    # VISIBILITY_FIELDS (visibility_token()); None: this update may change who
    # may see it. For gateways only: as_message() leaves it out.
    visibility: str | None = None
    # The token of the values the saving process loaded the object with (None:
    # not known, or a create): what the save changed them from. Gateways only.
    visibility_was: str | None = None

    def __post_init__(self) -> None:
        # Checked on both sides: what the publisher builds and what the gateway
        # reads from Redis must never hold a type that could break a receiver.
        problem = _field_problem(self)
        if problem:
            raise InvalidUpdate(problem)

    @property
    def channel(self) -> str:
        return channel_name(self.model)

    def as_dict(self) -> dict[str, Any]:
        """The Redis body's fields, in wire order; absent optional keys are left out."""
        body = {
            "url": self.url,
            "event": self.event,
            "model": self.model,
            "pk": self.pk,
        }
        if self.collection is not None:
            body["collection"] = self.collection
        if self.data is not None:
            body["data"] = self.data
        if self.published is not None:
            body["published"] = self.published
        if self.visibility is not None:
            body["visibility"] = self.visibility
        if self.visibility_was is not None:
            body["visibility_was"] = self.visibility_was
        if self.version is not None:
            body["version"] = self.version
        return body

    def as_message(self) -> dict[str, Any]:
        """The object a browser receives (what is for gateways only left out)."""
        message = {"type": "update", **self.as_dict()}
        for key in GATEWAY_ONLY:
            message.pop(key, None)
        return message

    def stamped(self) -> Update:
        """This update, marked as published now (unless it is already)."""
        if self.published is not None:
            return self
        return self.replace(published=round(time.time(), 3))

    def encode(self) -> bytes:
        """The Redis body; InvalidUpdate if a value is not JSON (NaN included).

        Computed once: building, checking and publishing an update all need it.
        """
        body = self.__dict__.get("_body")
        if body is None:
            body = self._encode()
            object.__setattr__(self, "_body", body)  # a cache, not a field
        return body

    def _encode(self) -> bytes:
        try:
            text = json.dumps(
                self.as_dict(),
                cls=DjangoJSONEncoder,
                separators=(",", ":"),
                allow_nan=False,
            )
        except (TypeError, ValueError, RecursionError) as e:
            raise InvalidUpdate(f"update of {self.model}: not JSON: {e}") from e
        return text.encode()

    def replace(self, **changes: Any) -> Update:
        return dataclasses.replace(self, **changes)

    @classmethod
    def decode(cls, body: bytes | str) -> Update:
        """Parse a Redis body; ValueError, and only that, for anything else.

        Whatever the bytes, nothing but ValueError escapes: deep nesting
        (RecursionError), NaN and Infinity (refused: browsers' JSON.parse rejects
        them), fields of the wrong type. The gateway relies on this.
        """
        try:
            fields = json.loads(body, parse_constant=_refuse_constant)
        except RecursionError as e:
            raise ValueError("not JSON: nested too deeply") from e
        except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, huge ints
            raise ValueError(f"not JSON: {e}") from e
        if not isinstance(fields, dict):
            raise ValueError("not a JSON object")
        missing = REQUIRED - fields.keys()
        if missing:
            raise ValueError(f"lacks {', '.join(sorted(missing))}")
        return cls(**{k: fields[k] for k in FIELDS if k in fields})


def _type_name(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def _field_problem(update: Update) -> str | None:
    """What is wrong with the fields' types, or None."""
    for name in ("url", "model"):
        value = getattr(update, name)
        if not isinstance(value, str):
            return f"{name} must be a str, not {_type_name(value)}"
    if update.event not in EVENTS:
        return f"event must be one of {', '.join(EVENTS)}, not {update.event!r}"
    pk = update.pk
    if isinstance(pk, bool) or not isinstance(pk, (int, str)):
        return f"pk must be an int or a str, not {_type_name(pk)}"
    collection, data = update.collection, update.data
    if collection is not None and not isinstance(collection, str):
        return f"collection must be a str or absent, not {_type_name(collection)}"
    if data is not None and not isinstance(data, dict):
        return f"data must be an object or absent, not {_type_name(data)}"
    version = update.version
    if version is not None and (
        isinstance(version, bool) or not isinstance(version, int) or version < 0
    ):
        return f"version must be a non-negative int or absent, not {version!r}"[:200]
    published = update.published
    if published is not None and (
        isinstance(published, bool) or not isinstance(published, (int, float))
    ):
        return f"published must be a number or absent, not {published!r}"[:200]
    for name in ("visibility", "visibility_was"):
        token = getattr(update, name)
        if token is not None and (not isinstance(token, str) or len(token) > MAX_TOKEN):
            return f"{name} must be a short str or absent, not {token!r}"[:200]
    return None


# Longest visibility token a gateway accepts (visibility_token() makes 16).
MAX_TOKEN = 64


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def model_label(model: type[models.Model] | models.Model) -> str:
    """``"app_label.model_name"`` for a model class or instance."""
    meta = model._meta
    return f"{meta.app_label}.{meta.model_name}"


def channel_name(label: str) -> str:
    return conf.get("CHANNEL_PREFIX") + label


# A control channel under the gateway's pattern; the ":" keeps it apart from every
# model channel (an "app_label.model_name" cannot hold one). docs/protocol.md.
RESYNC_SUFFIX = ":resync"


def resync_channel() -> str:
    """Where the capture process asks gateways to tell their clients to resync."""
    return conf.get("CHANNEL_PREFIX") + RESYNC_SUFFIX


def resync_request(models: Iterable[str], reasons: Iterable[str]) -> str:
    """A resync request's body: the models, and why (each reason once, in order)."""
    reason = "; ".join(dict.fromkeys(reasons))
    return json.dumps(
        {"models": sorted(models), "reason": reason}, separators=(",", ":")
    )


EXPLAIN_SUFFIX = ":explain"


def explain_channel() -> str:
    """Where ``manage.py pushy_explain`` asks gateways for their subscriber counts."""
    return conf.get("CHANNEL_PREFIX") + EXPLAIN_SUFFIX


def explain_reply_prefix() -> str:
    """The Redis list keys gateways answer explain requests in (keys, not channels)."""
    return conf.get("CHANNEL_PREFIX") + EXPLAIN_SUFFIX + ":reply:"


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
