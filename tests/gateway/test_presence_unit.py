"""A presence room in-process: people merged over gateways, counted, ordered."""

from __future__ import annotations

import json

import gevent
import pytest

from pushy.gateway.presence import PACE, PACE_MEMBERS, Presence
from pushy.gateway.rooms import Room, parse_entry
from tests.gateway.test_actions_unit import text_of

pytestmark = pytest.mark.timeout(10)


def message(room: Room, limit: int = 20) -> dict:
    return json.loads(text_of(room.frame(limit)))


def test_a_person_on_two_gateways_counts_once_from_their_earliest_join():
    room = Room("/u/")
    room.set_entry("g1", "alice", ("alice", 300))
    room.set_entry("g2", "alice", ("alice", 100))
    room.set_entry("g2", "bob", ("bob", 200))
    sent = message(room)
    assert sent["count"] == 2 and sent["anonymous"] == 0
    assert [(p["name"], p["since"]) for p in sent["people"]] == [
        ("alice", 100),
        ("bob", 200),
    ]
    room.drop_entry("g2", "alice")  # her earlier tab left: since moves on
    assert [p["since"] for p in message(room)["people"]] == [200, 300]
    room.drop_gateway("g2")
    assert message(room)["people"] == [{"id": "alice", "name": "alice", "since": 300}]


def test_anonymous_people_are_counted_not_listed_and_lists_are_bounded():
    room = Room("/u/")
    for n in range(5):
        room.set_entry("g1", f"p{n}", (f"user{n}", n))
    room.set_entry("g1", "anon", (None, 0))
    sent = message(room, limit=2)
    assert sent["count"] == 6 and sent["anonymous"] == 1
    assert [p["name"] for p in sent["people"]] == ["user0", "user1"]
    room.drop_entry("g1", "anon")
    room.drop_entry("g1", "never")  # unknown: nothing happens
    assert message(room)["anonymous"] == 0 and message(room)["count"] == 5


@pytest.mark.parametrize("raw", ["[1, 2]", '["a"]', '{"a": 1}', '["a", "1"]', "x"])
def test_an_entry_read_from_redis_must_be_name_and_since(raw):
    with pytest.raises(ValueError):
        parse_entry(raw)


class Member:
    """A stand-in connection: what it was sent."""

    def __init__(self) -> None:
        self.sent: list[dict] = []

    def send(self, frame: bytes) -> None:
        self.sent.append(json.loads(text_of(frame)))


def present(members: int) -> tuple[Presence, list[Member]]:
    """A Presence (never started: its Redis writes only queue) with ``members``
    people joined to /u/ and the room read (as from an empty Redis)."""
    presence = Presence("redis://127.0.0.1:1/0", limit=20, heartbeat=5)
    connections = [Member() for _ in range(members)]
    for n, connection in enumerate(connections):
        presence.join(connection, "/u/", f"p{n}", f"user{n}")
    presence._loaded(presence.rooms["/u/"], {})
    gevent.sleep(0)  # the loop turn that sends the list
    return presence, connections


def churn(presence: Presence, changes: int, seconds: float) -> None:
    """``changes`` people from another gateway join, spread over ``seconds``."""
    room = presence.rooms["/u/"]
    for n in range(changes):
        body = {"url": "/u/", "field": f"g2|q{n}", "entry": [f"q{n}", n]}
        presence.notice(json.dumps(body).encode())
        gevent.sleep(seconds / changes)
    gevent.sleep(PACE + 0.05)  # the last paced list
    assert room.people.keys() >= {f"q{n}" for n in range(changes)}


def test_a_small_room_hears_every_change_and_a_big_one_is_paced():
    small, few = present(5)
    churn(small, 10, 0.3)
    assert [m["count"] for m in few[0].sent] == [5, *range(6, 16)]

    big, many = present(PACE_MEMBERS + 1)
    churn(big, 10, 0.3)
    counts = [m["count"] for m in many[0].sent]
    # The changes of 0.3 s in a few lists, the last one complete.
    assert len(counts) <= 1 + 0.3 / PACE + 2 and counts[-1] == PACE_MEMBERS + 11
    assert all(m.sent == many[0].sent for m in many)


def test_a_second_tab_is_sent_the_list_without_a_change_for_the_others():
    presence, members = present(2)
    tab = Member()
    presence.join(tab, "/u/", "p0", "user0")  # p0's second connection
    gevent.sleep(0)
    assert [m["count"] for m in tab.sent] == [2]
    assert [len(m.sent) for m in members] == [1, 1]
    presence.leave(members[0], "/u/")  # p0 still has the tab
    gevent.sleep(0)
    assert presence.rooms["/u/"].people.keys() == {"p0", "p1"}
    presence.leave(tab, "/u/")
    gevent.sleep(0)
    assert members[1].sent[-1]["count"] == 1
