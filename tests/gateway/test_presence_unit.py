"""A presence room in-process: people merged over gateways, counted, ordered."""

from __future__ import annotations

import json

import pytest

from pushy.gateway.presence import Room, _parse_entry
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
        _parse_entry(raw)
