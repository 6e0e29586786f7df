"""The Update value: what changed, built from a model instance, and its wire form.

An update travels through Redis as JSON (without ``type``) on the channel
``CHANNEL_PREFIX + "app_label.model_name"``; the gateway adds ``"type": "update"``
when it hands it to browsers. See docs/protocol.md.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from pushy import conf

CREATE = "create"
UPDATE = "update"
DELETE = "delete"
EVENTS = (CREATE, UPDATE, DELETE)


@dataclasses.dataclass(frozen=True)
class Update:
    """One change to one object, as published to Redis and pushed to browsers."""

    url: str
    event: str
    model: str
    pk: Any
    collection: str | None = None
    data: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.event not in EVENTS:
            raise ValueError(f"event must be one of {EVENTS}, not {self.event!r}")

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
        return body

    def as_message(self) -> dict[str, Any]:
        """The object a browser receives."""
        return {"type": "update", **self.as_dict()}

    def encode(self) -> bytes:
        """The Redis body."""
        return json.dumps(
            self.as_dict(), cls=DjangoJSONEncoder, separators=(",", ":")
        ).encode()

    def replace(self, **changes: Any) -> Update:
        return dataclasses.replace(self, **changes)

    @classmethod
    def decode(cls, body: bytes | str) -> Update:
        """Parse a Redis body; raises ValueError for anything that is not an update."""
        try:
            fields = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"not JSON: {e}") from e
        if not isinstance(fields, dict):
            raise ValueError("an update must be a JSON object")
        missing = {"url", "event", "model", "pk"} - fields.keys()
        if missing:
            raise ValueError(f"update lacks {sorted(missing)}")
        if not isinstance(fields["url"], str) or not isinstance(fields["model"], str):
            raise ValueError("url and model must be strings")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in fields.items() if k in known})


def model_label(model: type[models.Model] | models.Model) -> str:
    """``"app_label.model_name"`` for a model class or instance."""
    meta = model._meta
    return f"{meta.app_label}.{meta.model_name}"


def channel_name(label: str) -> str:
    return conf.get("CHANNEL_PREFIX") + label


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


def collection_url(instance: models.Model, url: str) -> str | None:
    get_list_url = getattr(instance, "get_api_list_url", None)
    if callable(get_list_url):
        return get_list_url()
    return parent_url(url)


def _json_pk(pk: Any) -> Any:
    # JSON keeps ints and strings as they are; UUIDs and others travel as text.
    if isinstance(pk, (int, str)) and not isinstance(pk, bool):
        return pk
    return str(pk)


def _data(instance: models.Model) -> dict[str, Any] | None:
    get_data = getattr(instance, "get_pushy_data", None)
    if not callable(get_data):
        return None
    # Round trip now, so dates and decimals are fixed as they were at save time.
    return json.loads(json.dumps(get_data(), cls=DjangoJSONEncoder))


def build_update(instance: models.Model, event: str) -> Update:
    """The update for ``instance`` now (call before a delete clears its pk)."""
    url = instance.get_api_url()
    return Update(
        url=url,
        event=event,
        model=model_label(instance),
        pk=_json_pk(instance.pk),
        collection=collection_url(instance, url),
        data=_data(instance),
    )
