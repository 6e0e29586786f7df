"""What the gateway sends a client: one builder per message of docs/protocol.md.

Every gateway → client message is built here and nowhere else, as the text
frame bytes ``Connection.send()`` takes, so its keys (and their order, which
tests and clients may read) are written down once. The messages that never
vary are built once, at import.
"""

from __future__ import annotations

import functools

from pushy.gateway.frames import message_frame
from pushy.messages import Update

PONG = message_frame({"type": "pong"})
# The plain resync ("reload everything you show"), protocol v1.
RESYNC = message_frame({"type": "resync"})


def subscribed(url: str, version: int | None = None) -> bytes:
    """``{"type": "subscribed", "url": U}``, with ``"version"`` when there is one."""
    if version is None:
        return message_frame({"type": "subscribed", "url": url})
    return message_frame({"type": "subscribed", "url": url, "version": version})


def unsubscribed(url: str) -> bytes:
    return message_frame({"type": "unsubscribed", "url": url})


def joined(url: str, you: str) -> bytes:
    """``{"type": "joined", "url": U, "you": ID}``: present, as the person ID."""
    return message_frame({"type": "joined", "url": url, "you": you})


def left(url: str) -> bytes:
    return message_frame({"type": "left", "url": url})


def presence(url: str, people: list[dict], count: int, anonymous: int) -> bytes:
    """``{"type": "presence", "url": U, "people": [...], "count": N, "anonymous": A}``:
    the first people present (``{"id", "name", "since"}``, earliest first), how
    many are there in all, and how many of them are not named."""
    return message_frame(
        {
            "type": "presence",
            "url": url,
            "people": people,
            "count": count,
            "anonymous": anonymous,
        }
    )


def error(code: str, message: str, url: str | None = None) -> bytes:
    """``{"type": "error", "code": ..., "message": ...}``, with ``"url"`` if any."""
    body: dict[str, str] = {"type": "error", "code": code, "message": message}
    if url is not None:
        body["url"] = url
    return message_frame(body)


def resync(url: str, version: int) -> bytes:
    """The resync of one URL, for a client that sends versions."""
    return message_frame({"type": "resync", "url": url, "version": version})


@functools.lru_cache(maxsize=1024)
def hidden(url: str, collection: str | None) -> bytes:
    """``{"type": "hidden", "url": U, "collection": C}`` (C when the object has one)."""
    message = {"type": "hidden", "url": url}
    if collection is not None:
        message["collection"] = collection
    return message_frame(message)


def update(update: Update) -> bytes:
    """An update as browsers get it (``Update.as_message()``: gateway-only keys out)."""
    return message_frame(update.as_message())
