"""A URL's people, as one gateway knows them (presence.py keeps them true).

A ``Room`` holds, for one URL joined here, every person present on any
gateway (a ``Person``, with an entry per gateway they are on) in the order
they came, and this process's own members (``Local``); it builds the
presence message its members are sent. Nothing here talks to Redis.
"""

from __future__ import annotations

import bisect
import json
from typing import Any

from pushy.gateway import replies


class Person:
    """One person in a room: their entries on every gateway."""

    __slots__ = ("id", "name", "since", "entries")

    def __init__(self, pid: str) -> None:
        self.id = pid
        self.name: str | None = None
        self.since = 0
        self.entries: dict[str, tuple[str | None, int]] = {}  # gateway -> entry

    def settle(self) -> None:
        """Name and since from the entries: the earliest since, any name."""
        self.since = min(since for _, since in self.entries.values())
        names = [name for name, _ in self.entries.values() if name]
        self.name = names[0] if names else None


class Local:
    """A person's connections on one URL in this process."""

    __slots__ = ("name", "since", "connections")

    def __init__(self, name: str | None, since: int) -> None:
        self.name = name
        self.since = since
        self.connections: set[Any] = set()


class Room:
    """One URL with members here: its people on every gateway, and ours."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.people: dict[str, Person] = {}
        # The named people, earliest first: (since, id), kept sorted.
        self.order: list[tuple[int, str]] = []
        self.anonymous = 0
        self.local: dict[str, Local] = {}  # person id -> our connections
        self.members: set[Any] = set()  # our connections joined here
        # Changes heard while the first read is under way (applied after it).
        self.pending: list[tuple[str, Any]] | None = []
        self.last_frame: bytes | None = None
        self.unsent: set[Any] = set()  # members not sent the list yet
        self.emitted_at = 0.0  # when the list last went to every member
        self.emit_due = False

    @property
    def loaded(self) -> bool:
        return self.pending is None

    def set_entry(self, gateway: str, pid: str, entry: tuple[str | None, int]) -> None:
        person = self.people.get(pid)
        if person is None:
            person = self.people[pid] = Person(pid)
        else:
            self._unlist(person)
        person.entries[gateway] = entry
        person.settle()
        self._list(person)

    def drop_entry(self, gateway: str, pid: str) -> None:
        person = self.people.get(pid)
        if person is None or gateway not in person.entries:
            return
        self._unlist(person)
        del person.entries[gateway]
        if person.entries:
            person.settle()
            self._list(person)
        else:
            del self.people[pid]

    def drop_gateway(self, gateway: str) -> None:
        for pid in [p.id for p in self.people.values() if gateway in p.entries]:
            self.drop_entry(gateway, pid)

    def _list(self, person: Person) -> None:
        if person.name:
            bisect.insort(self.order, (person.since, person.id))
        else:
            self.anonymous += 1

    def _unlist(self, person: Person) -> None:
        if person.name:
            key = (person.since, person.id)
            i = bisect.bisect_left(self.order, key)
            if i < len(self.order) and self.order[i] == key:
                del self.order[i]
        else:
            self.anonymous -= 1

    def frame(self, limit: int) -> bytes:
        """The presence message: the first ``limit`` named people, and counts."""
        shown = []
        for since, pid in self.order[:limit]:
            shown.append({"id": pid, "name": self.people[pid].name, "since": since})
        return replies.presence(self.url, shown, len(self.people), self.anonymous)


def parse_entry(raw: Any) -> tuple[str | None, int]:
    """A field's value, ``[name, since]``; ValueError if it is not one."""
    value = json.loads(raw)
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not (value[0] is None or isinstance(value[0], str))
        or not isinstance(value[1], int)
    ):
        raise ValueError("not [name, since]")
    return value[0], value[1]
