"""The capture's resync request against a real Redis (no PostgreSQL needed).

It is one step, ``versions.LOSE_SCRIPT``: a new version epoch and the request on
the resync channel. What Redis does not take stays owed; a Redis that refuses
the script's writes for now (a read-only replica) gets the request at once and
the epoch later; one that refuses scripts gets the request alone.
"""

from __future__ import annotations

import logging

import pytest
import redis

from pushy import publisher, versions
from pushy.capture import resync
from pushy.capture.resync import Resyncs

pytestmark = pytest.mark.timeout(30)

RESYNC = "pushy_:resync"


@pytest.fixture(autouse=True)
def no_interval(monkeypatch):
    monkeypatch.setattr(resync, "MIN_INTERVAL", 0)


def floor() -> int:
    """The floor of the version epoch in force (a lookup, as a gateway's)."""
    reply = publisher.get_client().eval(
        versions.LOOKUP_SCRIPT, 1, versions.book_key(), *versions.lookup_args([])
    )
    return versions.Snapshot.from_reply([], reply).floor


def test_one_step_moves_the_epoch_and_asks_every_gateway(published):
    before = floor()
    owed = Resyncs()
    owed.owe({"captureapp.tag": "a truncate", "captureapp.item": "a publish failed"})
    owed.owe({"captureapp.item": "captured again"})  # the first reason stays
    owed.settle()
    assert published.next() == (
        RESYNC,
        {
            "models": ["captureapp.item", "captureapp.tag"],
            "reason": "a truncate; a publish failed",
        },
    )
    assert floor() > before
    assert (owed.owed, owed.epoch) == ({}, False)
    owed.settle()  # nothing owed: nothing sent
    published.assert_nothing_more()


def test_requests_are_spaced(published, monkeypatch):
    monkeypatch.setattr(resync, "MIN_INTERVAL", 60)
    owed = Resyncs()
    owed.owe({"captureapp.item": "an update it could not build"})
    owed.settle()
    owed.owe({"captureapp.item": "an update it could not build"})
    owed.settle()  # too soon: waits, with whatever else is owed by then
    assert published.next()[0] == RESYNC
    published.assert_nothing_more()
    assert owed.owed == {"captureapp.item": "an update it could not build"}


def test_redis_down_keeps_it_owed_and_warns_once(settings, pushy_redis, caplog):
    settings.PUSHY_SETTINGS = {
        **settings.PUSHY_SETTINGS,
        "REDIS_URL": "redis://127.0.0.1:1/0",
    }
    owed = Resyncs()
    owed.owe({"captureapp.item": "capture became active"})
    for _ in range(3):
        owed.settle()
    assert (owed.owed, owed.epoch) == (
        {"captureapp.item": "capture became active"},
        True,
    )
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "could not ask for a resync" in warnings[0].message


@pytest.fixture
def read_only(pushy_redis):
    """The test's Redis as a read-only replica (of a master that is not there)."""
    client = redis.Redis.from_url(pushy_redis.url)
    yield client
    client.replicaof("NO", "ONE")
    client.close()


def test_refused_for_now_the_request_at_once_the_epoch_later(published, read_only):
    before = floor()
    read_only.replicaof("127.0.0.1", "1")  # writes refused: READONLY
    owed = Resyncs()
    owed.owe({"captureapp.item": "capture became active"})
    owed.settle()
    # The clients connected now are told at once; the epoch is still owed.
    assert published.next()[0] == RESYNC
    assert (owed.owed, owed.epoch) == ({}, True)
    owed.settle()  # still refused: still owed, and nothing sent again
    assert owed.epoch
    read_only.replicaof("NO", "ONE")
    owed.settle()
    assert not owed.epoch
    assert floor() > before
    published.assert_nothing_more()  # the request went out once


@pytest.fixture
def no_scripts(settings, pushy_redis):
    """REDIS_URL as a user who may do everything but run scripts."""
    admin = redis.Redis.from_url(pushy_redis.url)
    admin.acl_setuser(
        "noscripts",
        enabled=True,
        nopass=True,
        keys=["*"],
        channels=["*"],
        commands=["+@all", "-@scripting"],
    )
    host, port = pushy_redis.url.split("//")[1].split("/")[0].split(":")
    url = f"redis://noscripts@{host}:{port}/0"
    settings.PUSHY_SETTINGS = {**settings.PUSHY_SETTINGS, "REDIS_URL": url}
    yield
    admin.acl_deluser("noscripts")
    admin.close()


def test_a_redis_refusing_scripts_gets_the_request_alone(published, no_scripts, caplog):
    owed = Resyncs()
    owed.owe({"captureapp.item": "capture became active"})
    owed.settle()
    assert published.next()[0] == RESYNC
    assert (owed.owed, owed.epoch) == ({}, False)
    assert "refused pushy's version script" in caplog.text
