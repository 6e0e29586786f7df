"""From trigger notifications to the changes to publish: parsed, then coalesced.

Pure functions, no database: the capture process feeds them what ``LISTEN``
received. Notifications of one transaction arrive together and in the order its
statements ran (PostgreSQL queues a transaction's notifications at commit, never
interleaved with another's), so folding them in order per object gives what the
signal path's per-transaction coalescing gives: one update per object.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pushy.messages import CREATE, DELETE, UPDATE
from pushy.updates import fold

logger = logging.getLogger(__name__)

EVENTS = {"i": CREATE, "u": UPDATE, "d": DELETE}
TRUNCATE = "t"


@dataclass
class Changes:
    """What a batch of notifications asks for.

    ``events`` maps (model label, pk) to the event to publish, in first-seen
    order; ``resync`` maps the labels whose changes cannot be told object by
    object to why (a truncate, a key too long for a notification).
    """

    events: dict[tuple[str, Any], str] = field(default_factory=dict)
    resync: dict[str, str] = field(default_factory=dict)

    def by_model(self) -> dict[str, dict[str, list[Any]]]:
        """label -> event -> pks, for loading in batches."""
        grouped: dict[str, dict[str, list[Any]]] = {}
        for (label, pk), event in self.events.items():
            grouped.setdefault(label, {}).setdefault(event, []).append(pk)
        return grouped


def parse(payload: str) -> dict[str, Any] | None:
    """A notification's fields, or None (logged) when it is not pushy's."""
    try:
        fields = json.loads(payload)
    except json.JSONDecodeError:
        fields = None
    valid = (
        isinstance(fields, dict)
        and isinstance(fields.get("m"), str)
        and (fields.get("e") == TRUNCATE or fields.get("e") in EVENTS)
        and (fields.get("e") == TRUNCATE or isinstance(fields.get("k"), list))
    )
    if not valid:
        logger.warning("pushy capture ignores a notification: %.200s", payload)
        return None
    return fields


def keys(elements: list[Any]) -> Iterator[Any]:
    """The primary keys a notification's ``k`` lists; ``[first, last]`` is a run."""
    for element in elements:
        if not isinstance(element, list):
            yield element
        elif len(element) == 2 and all(type(end) is int for end in element):
            yield from range(element[0], element[1] + 1)
        else:
            logger.warning("pushy capture ignores a key: %.200r", element)


def collect(payloads: Iterable[str], labels: frozenset[str]) -> Changes:
    """Coalesce notifications, in order, into one event per object.

    Models not in ``labels`` (no longer captured, triggers not yet removed) are
    skipped.
    """
    changes = Changes()
    for payload in payloads:
        fields = parse(payload)
        if fields is None or fields["m"] not in labels:
            continue
        label = fields["m"]
        if fields["e"] == TRUNCATE:
            changes.resync.setdefault(label, "a truncate")
            continue
        event = EVENTS[fields["e"]]
        for pk in keys(fields["k"]):
            if pk is None:  # a key too long to send: resync the model
                changes.resync.setdefault(label, "a key too long to notify")
                continue
            key = (label, pk)
            folded = fold(changes.events.pop(key, None), event)
            if folded is not None:
                changes.events[key] = folded
    return changes
