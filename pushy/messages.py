"""The Update value and its wire form: nothing but the value.

An update travels through Redis as JSON (without ``type``) on the channel
``CHANNEL_PREFIX + "app_label.model_name"`` (pushy/channels.py); the gateway adds
``"type": "update"`` when it hands it to browsers. See docs/protocol.md. Building
one from a model instance is pushy/updates.py's job.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

from pushy.channels import channel_name
from pushy.exceptions import InvalidUpdate

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
    # VISIBILITY_FIELDS (updates.visibility_token()); None: this update may change who
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


# Longest visibility token a gateway accepts (updates.visibility_token() makes 16).
MAX_TOKEN = 64


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
