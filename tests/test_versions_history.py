"""The history the publish script keeps beside the versions, and what a replay
reads of it, run on the private Redis (issue 24 item 5): a gap it holds is
answered with its messages in order; a gap it may not hold, whatever Redis
dropped or trimmed, is None (the client resyncs)."""

from __future__ import annotations

import json

import pytest

from pushy import versions
from tests.support.version_book import own_book
from tests.support.version_book import publish as run_script

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def store(pushy_redis, settings):
    history = {"HISTORY_LENGTH": 8, "HISTORY_SECONDS": 60}
    with own_book(pushy_redis.url, settings, "history", **history) as client:
        yield client


def publish(store, url, collection=None, n=0, channel="c"):
    body = json.dumps({"url": url, "n": n}).encode()
    _, version = run_script(
        store, url, body=body, sender="s", collection=collection, channel=channel
    )
    return version


def replayed(store, url, seen):
    found = versions.replay(store, url, seen)
    return None if found is None else [json.loads(body)["n"] for body in found]


def test_a_gap_the_history_holds_is_replayed_in_order_with_versions(store):
    seen = publish(store, "/a/1/", "/a/", n=0)
    for n in (1, 2, 3):
        publish(store, "/a/1/", "/a/", n=n)
        publish(store, "/b/1/", n=10 + n)  # another URL's: not replayed
    assert replayed(store, "/a/1/", seen) == [1, 2, 3]
    assert replayed(store, "/a/", seen) == [1, 2, 3]  # as their collection
    found = versions.replay(store, "/a/1/", seen)
    assert [versions.version_of(b) for b in found] == sorted(
        json.loads(b)["version"] for b in found
    )
    last = versions.version_of(found[-1])
    assert replayed(store, "/a/1/", last) == []  # nothing missed


def test_a_gap_older_than_the_history_keeps_is_not_replayed(store):
    seen = publish(store, "/a/1/", n=0)
    for n in range(1, 9):  # HISTORY_LENGTH 8: the first of these is trimmed
        publish(store, "/b/1/", n=n)
    kept = publish(store, "/b/1/", n=9)
    assert replayed(store, "/a/1/", seen) is None
    assert store.zcard(versions.history_key()) == 8 + 1  # and ":since"
    # A gap still held (from its predecessor in the history) is replayed.
    assert replayed(store, "/b/1/", kept - 1) == [9]


def test_old_entries_leave_by_age(store, settings):
    seen = publish(store, "/a/1/", n=0)
    publish(store, "/a/1/", n=1)
    # Two minutes later by Redis' clock: as if every entry were that old.
    history = versions.history_key()
    old = store.zrange(history, 0, -1, withscores=True)
    shift = 120 * 1_000_000
    store.zadd(history, {m: s - shift for m, s in old})
    # Ages are looked at one publish in 8 (by version): within a hundred.
    for n in range(100):
        publish(store, "/b/1/", n=2 + n)
        if store.zcard(history) < n + 4:
            break
    assert replayed(store, "/a/1/", seen - shift) is None
    assert not store.zrangebyscore(history, "-inf", seen, start=1, num=1)
    assert store.ttl(history) > 60  # idle, it goes (2 x HISTORY_SECONDS)


def test_a_history_lost_while_the_book_stayed_vouches_only_for_what_follows(
    store,
):
    seen = publish(store, "/a/1/", n=0)
    after = publish(store, "/a/1/", n=1)
    store.delete(versions.history_key())  # evicted, expired, flushed alone
    assert replayed(store, "/a/1/", seen) is None
    assert replayed(store, "/a/1/", after) == []  # nothing given a version since
    publish(store, "/a/1/", n=2)
    assert replayed(store, "/a/1/", seen) is None  # n=1 is lost
    assert replayed(store, "/a/1/", after) == [2]


def test_lookups_between_updates_leave_the_history_vouching_for_their_gap(store):
    # A lookup moves ":last" (its baseline) without an update: a history
    # begun after it still holds every update after the version held before.
    versions.lookup(store, [])
    seen = versions.lookup(store, ["/a/1/"]).baseline
    versions.lookup(store, [])
    publish(store, "/a/1/", n=1)
    assert replayed(store, "/a/1/", seen) == [1]
    store.delete(versions.history_key())
    seen = versions.lookup(store, []).baseline
    versions.lookup(store, [])
    publish(store, "/a/1/", n=2)
    assert replayed(store, "/a/1/", seen) == [2]


def test_a_book_lost_while_the_history_stayed_is_a_new_epoch(store):
    seen = publish(store, "/a/1/", n=0)
    publish(store, "/a/1/", n=1)
    store.delete(versions.book_key())
    publish(store, "/a/1/", n=2)
    assert replayed(store, "/a/1/", seen) is None


def test_a_loss_inside_the_gap_is_not_replayed(store):
    seen = publish(store, "/a/1/", n=0)
    publish(store, "/a/1/", n=1)
    versions.lose(store)
    publish(store, "/a/1/", n=2)
    assert replayed(store, "/a/1/", seen) is None


def test_versions_moved_without_a_message_end_what_the_history_vouches_for(store):
    seen = publish(store, "/a/1/", n=0)
    moved = publish(store, "/a/1/", n=1, channel="")  # no message to replay
    assert replayed(store, "/a/1/", seen) is None
    publish(store, "/a/1/", n=2)
    assert replayed(store, "/a/1/", moved) == [2]


def test_a_version_from_the_future_is_not_replayed(store):
    seen = publish(store, "/a/1/", n=0)
    assert replayed(store, "/a/1/", seen + 10**9) is None


def test_no_history_with_length_zero(store, settings):
    settings.PUSHY_SETTINGS = {**settings.PUSHY_SETTINGS, "HISTORY_LENGTH": 0}
    seen = publish(store, "/a/1/", n=0)
    publish(store, "/a/1/", n=1)
    assert not store.exists(versions.history_key())
    assert replayed(store, "/a/1/", seen) is None


def test_updates_published_without_the_history_are_not_replayed_over(store, settings):
    # A publisher with HISTORY_LENGTH 0 still gives versions: a history left
    # from before does not hold its updates.
    seen = publish(store, "/a/1/", n=0)
    publish(store, "/a/1/", n=1)
    settings.PUSHY_SETTINGS = {**settings.PUSHY_SETTINGS, "HISTORY_LENGTH": 0}
    publish(store, "/a/1/", n=2)
    assert replayed(store, "/a/1/", seen) is None


def test_an_earlier_release_moving_the_versions_is_not_replayed_over(store):
    # A publisher or gateway of a release without the history moves ":last"
    # (its script sets neither ":given" nor ":looked"): what it published may be
    # in the gap, in no history.
    seen = publish(store, "/a/1/", n=0)
    publish(store, "/a/1/", n=1)
    last = store.zscore(versions.book_key(), ":last")
    store.zadd(versions.book_key(), {":last": last + 10, "u:/a/1/": last + 10})
    assert replayed(store, "/a/1/", seen) is None
    # The next publish starts the history again after it.
    after = publish(store, "/a/1/", n=2)
    assert replayed(store, "/a/1/", seen) is None
    publish(store, "/a/1/", n=3)
    assert replayed(store, "/a/1/", after) == [3]
