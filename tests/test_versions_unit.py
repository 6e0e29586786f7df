"""pushy.versions.Snapshot.changed_since, the rule the gateway applies (the real
Redis scripts and gateway are tested in tests/gateway/test_versions.py)."""

import pytest

from pushy.versions import Snapshot, valid_version

pytestmark = pytest.mark.timeout(10)

DAY = 86400
NOW = 1_800_000_000_000_000
FLOOR = NOW - 10 * DAY * 1_000_000


def snapshot(**versions):
    return Snapshot(baseline=NOW, floor=FLOOR, now=NOW, versions=versions)


def test_a_stored_version_newer_than_the_clients_is_a_change():
    assert snapshot(u=NOW - 5).changed_since("u", NOW - 6, DAY)
    assert not snapshot(u=NOW - 5).changed_since("u", NOW - 5, DAY)
    assert not snapshot(u=NOW - 5).changed_since("u", NOW - 4, DAY)


def test_no_stored_version_is_no_change_within_the_ttl_and_unknown_after():
    assert not snapshot(u=None).changed_since("u", NOW - DAY * 1_000_000 + 1, DAY)
    assert snapshot(u=None).changed_since("u", NOW - DAY * 1_000_000, DAY)


def test_a_version_from_before_the_floor_is_from_another_epoch():
    assert snapshot(u=None).changed_since("u", FLOOR - 1, 100 * DAY)
    assert snapshot(u=FLOOR - 5).changed_since("u", FLOOR - 1, 100 * DAY)
    assert not snapshot(u=FLOOR - 5).changed_since("u", FLOOR, 100 * DAY)


def test_a_version_redis_never_gave_out_is_never_unchanged():
    # Past the baseline: Redis went back (an older snapshot, a lagging replica).
    assert snapshot(u=NOW - 5).changed_since("u", NOW + 1, DAY)
    assert snapshot(u=None).changed_since("u", NOW + 1, DAY)


def test_replies_parse_and_chunks_merge():
    first = Snapshot.from_reply(["a", "b"], [b"30", b"10", b"29", b"20", None])
    assert first == Snapshot(30, 10, 29, {"a": 20, "b": None})
    second = Snapshot.from_reply(["c"], [b"31", b"10", b"31", b"25"])
    assert first.with_versions(second).versions == {"a": 20, "b": None, "c": 25}
    assert first.with_versions(second).baseline == 30


@pytest.mark.parametrize(
    ("value", "ok"),
    [(0, True), (5, True), (-1, False), (True, False), (1.0, False), ("1", False)],
)
def test_valid_versions(value, ok):
    assert valid_version(value) is ok
