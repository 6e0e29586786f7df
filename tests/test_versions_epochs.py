"""The version scripts' epochs, pruning and repeat detection, run on the private
Redis (issue 20 item 1). The same rules seen through real faults (restarts,
failovers, eviction) are in tests/chaos/."""

from __future__ import annotations

import pytest

from pushy import versions
from pushy.versions import Snapshot
from tests.support.version_book import TTL, own_book, publish

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def store(pushy_redis, settings):
    with own_book(pushy_redis.url, settings, "epochs") as client:
        yield client


def lookup(store, urls, horizon=None) -> Snapshot:
    args = versions.lookup_args(urls, horizon)
    reply = store.eval(versions.LOOKUP_SCRIPT, 1, versions.book_key(), *args)
    return Snapshot.from_reply(urls, reply)


def epoch_member(store) -> tuple[str, int]:
    [member] = store.zrangebyscore(versions.book_key(), -1, -1)
    _, _, run, floor = member.decode().split(":")
    return run, int(floor)


def test_another_redis_process_behind_the_book_starts_an_epoch_past_all_it_gave(
    store,
):
    _, held = publish(store, "/a/")
    before = lookup(store, ["/a/"])
    assert not before.changed_since("/a/", held, TTL)
    # The book as a snapshot or a replica brings it: counted by another process.
    _, floor = epoch_member(store)
    store.zremrangebyscore(versions.book_key(), -1, -1)
    store.zadd(versions.book_key(), {f":epoch:{'f' * 40}:{floor}": -1})

    after = lookup(store, ["/a/"])
    assert after.floor >= before.baseline + versions.JUMP
    assert after.changed_since("/a/", held, TTL)
    assert epoch_member(store) == (store.info("server")["run_id"], after.floor)
    # The next publish counts on from the new floor; a client holding it is current.
    _, version = publish(store, "/a/")
    assert version > after.floor
    assert not lookup(store, ["/a/"]).changed_since("/a/", version, TTL)


def test_a_gateway_horizon_past_the_book_means_redis_went_back(store):
    publish(store, "/a/")
    snapshot = lookup(store, ["/a/"])
    ahead = snapshot.baseline + 5_000_000  # a version only a lost state gave out
    moved = lookup(store, ["/a/"], horizon=ahead)
    assert moved.floor > ahead and moved.baseline >= moved.floor
    assert moved.changed_since("/a/", ahead, TTL)
    # Once the floor passed it, the same horizon moves nothing more.
    assert lookup(store, [], horizon=ahead).floor == moved.floor


def test_a_horizon_absurdly_far_ahead_is_not_believed(store):
    floor = lookup(store, []).floor
    garbage = 2**53 - 1
    assert lookup(store, [], horizon=garbage).floor == floor


def test_a_book_evicted_or_flushed_starts_an_epoch_at_the_next_publish(store):
    _, held = publish(store, "/a/")
    store.delete(versions.book_key())
    _, version = publish(store, "/b/")
    snapshot = lookup(store, ["/a/"])
    assert snapshot.floor > held  # the clock moved on (no jump: same Redis)
    assert snapshot.changed_since("/a/", held, TTL)
    assert version > snapshot.floor


def test_a_lost_book_under_versions_that_ran_ahead_is_put_past_the_horizon(store):
    # After a failover's jump, versions run ahead of the clock; the book is
    # then flushed. A gateway's horizon puts the new floor past what it saw.
    publish(store, "/a/")
    ahead = lookup(store, []).now + versions.JUMP
    store.zadd(versions.book_key(), {":last": ahead})
    _, held = publish(store, "/a/")
    assert held > ahead
    store.delete(versions.book_key())
    assert lookup(store, ["/a/"]).changed_since("/a/", held, TTL)  # past baseline
    moved = lookup(store, ["/a/"], horizon=held)
    assert moved.floor > held
    assert moved.changed_since("/a/", held, TTL)


def test_old_entries_are_pruned_and_the_epoch_survives_pruning(store):
    publish(store, "/old/")
    run, floor = epoch_member(store)
    # Changed 5 s ago by Redis' clock; with a TTL of one second a publish prunes it.
    book = versions.book_key()
    store.zadd(book, {versions.url_member("/old/"): lookup(store, []).now - 5_000_000})
    # One publish in eight prunes (version % 8 == 0): a few hundred make it
    # certain (a miss in all of 200 has odds (7/8)^200, about 1e-12).
    for _ in range(200):
        publish(store, "/new/", ttl=1)
        if store.zscore(book, versions.url_member("/old/")) is None:
            break
    assert store.zscore(book, versions.url_member("/old/")) is None
    assert store.zscore(book, versions.url_member("/new/")) is not None
    assert epoch_member(store) == (run, floor)


def test_a_repeated_send_is_skipped_and_never_lands_after_a_later_one(store):
    _, first = publish(store, "/a/", seq="1")
    assert publish(store, "/a/", seq="1") == (-1, 0)  # the retry of a sent one
    _, second = publish(store, "/a/", seq="2")
    assert publish(store, "/a/", seq="1") == (-1, 0)  # a late copy of the first
    assert store.zscore(versions.book_key(), versions.url_member("/a/")) == second
    # Another publisher's numbering is its own.
    assert publish(store, "/a/", seq="1", sender="s2")[1] > second


def test_an_empty_channel_moves_versions_without_publishing(store):
    pubsub = store.pubsub()
    pubsub.subscribe("c")
    pubsub.get_message(timeout=1)
    count, version = publish(store, "/a/", channel="")
    assert count == 0
    assert store.zscore(versions.book_key(), versions.url_member("/a/")) == version
    assert pubsub.get_message(timeout=0.2) is None
    pubsub.close()


def test_lose_moves_the_floor_once_for_one_expected_floor(store):
    snapshot = lookup(store, [])
    pubsub = store.pubsub()
    pubsub.subscribe("resync")
    pubsub.get_message(timeout=1)
    book = versions.book_key()
    moved = int(
        store.eval(versions.LOSE_SCRIPT, 1, book, snapshot.floor, "resync", "x")
    )
    assert moved > snapshot.baseline
    assert pubsub.get_message(timeout=1)["data"] == b"x"
    # A second gateway that saw the same loss finds the floor already moved.
    again = int(store.eval(versions.LOSE_SCRIPT, 1, book, snapshot.floor, "", ""))
    assert again == moved
    pubsub.close()
