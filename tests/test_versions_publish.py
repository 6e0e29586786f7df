"""The publisher's side of versions, on the private Redis: one script per update
gives it its version; a Redis that refuses scripts still gets every update."""

from __future__ import annotations

import logging

import pytest
import redis

from pushy import publisher, versions
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


def test_a_redis_that_refuses_scripts_still_gets_every_update(
    published, pushy_redis, settings, caplog
):
    admin = redis.Redis.from_url(pushy_redis.url)
    admin.execute_command(
        "ACL", "SETUSER", "noscripts", "on", "nopass", "~*", "&*", "+@all",
        "-evalsha", "-eval", "-script",
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
