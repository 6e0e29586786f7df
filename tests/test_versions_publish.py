"""The publisher's side of versions, on the private Redis: one script per update
gives it its version; a Redis that refuses scripts still gets every update."""

from __future__ import annotations

import logging

import pytest
import redis

from pushy import publisher, sending, versions
from tests.gateway.clients import shot_update

pytestmark = pytest.mark.timeout(30)


def test_versions_grow_and_are_stored_for_the_url_and_its_collection(
    published, pushy_redis
):
    assert publisher.publish([shot_update(1), shot_update(2)]) == [1, 1]
    published.bodies(2)
    first, second = published.versions
    assert 0 < first < second
    store = redis.Redis.from_url(pushy_redis.url)
    book = versions.book_key()
    assert store.zscore(book, versions.url_member("/api/shot/1/")) == first
    assert store.zscore(book, versions.url_member("/api/shot/")) == second
    assert store.zscore(book, ":last") == second
    # Counting began in an epoch of this Redis process, with a floor below both.
    [epoch] = store.zrangebyscore(book, -1, -1)
    _, _, run, floor = epoch.decode().split(":")
    assert run == store.info("server")["run_id"] and int(floor) < first
    store.close()


@pytest.mark.parametrize(
    "refused",
    [("-evalsha", "-eval", "-script"), ("-script",)],
    ids=["every-script-command", "script-load-only"],
)
def test_a_redis_that_refuses_scripts_still_gets_every_update(
    published, pushy_redis, settings, caplog, monkeypatch, refused
):
    monkeypatch.setattr(sending, "_lines", {})  # its refusal line is due again
    admin = redis.Redis.from_url(pushy_redis.url)
    # Only SCRIPT LOAD refused: EVALSHA answers NOSCRIPT even right after the
    # load, and the update goes plainly instead of loading again and again.
    admin.script_flush()
    admin.execute_command(
        "ACL", "SETUSER", "noscripts", "on", "nopass", "~*", "&*", "+@all", *refused
    )  # fmt: skip
    admin.close()
    settings.PUSHY_SETTINGS = {
        **settings.PUSHY_SETTINGS,
        "REDIS_URL": pushy_redis.url.replace("redis://", "redis://noscripts@"),
    }
    try:
        with caplog.at_level(logging.WARNING, logger="pushy.publisher"):
            assert publisher.publish([shot_update(3)]) == [1]
    finally:
        admin = redis.Redis.from_url(pushy_redis.url)
        admin.execute_command("ACL", "DELUSER", "noscripts")
        admin.close()
    channel, body = published.next()
    assert body["pk"] == 3 and published.versions == []
    assert "refused pushy's version script" in caplog.text


def epoch_of(store: redis.Redis) -> bytes:
    [epoch] = store.zrangebyscore(versions.book_key(), -1, -1)
    return epoch


def test_an_update_after_redis_forgot_the_scripts_still_gets_its_version(
    published, pushy_redis
):
    assert publisher.publish([shot_update(4)]) == [1]  # the sender's link is up
    store = redis.Redis.from_url(pushy_redis.url)
    store.script_flush()  # NOSCRIPT on the same connection next
    assert publisher.publish([shot_update(5)]) == [1]
    published.bodies(2)
    first, second = published.versions
    assert 0 < first < second
    assert store.zscore(versions.book_key(), versions.url_member("/api/shot/5/")) == (
        second
    )
    store.close()


def test_a_resync_of_every_page_after_redis_forgot_the_scripts_moves_the_floor(
    published, pushy_redis
):
    assert publisher.publish([shot_update(6)]) == [1]
    published.next()
    store = redis.Redis.from_url(pushy_redis.url)
    before = epoch_of(store)
    store.script_flush()
    sender = sending.get()
    with sender.lock:
        sender._lose("testapp.shot", "a test's loss")
    assert sender.flush(5)
    channel, body = published.next()
    assert channel.endswith(":resync") and body["models"] == ["testapp.shot"]
    assert epoch_of(store) != before  # LOSE_SCRIPT ran, after SCRIPT LOAD
    store.close()
