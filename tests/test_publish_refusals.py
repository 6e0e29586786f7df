"""Refused updates still reach pages, are counted in Redis and in the process,
and are logged at a bounded rate that leaves none unaccounted for (issue 20
item 4)."""

from __future__ import annotations

import logging
import time

import pytest
import redis
from django.db import transaction

from pushy import refusals, sending, versions
from pushy.testing import capture_updates
from pushy.updates import REASONS
from tests.redis_subscriber import END
from tests.testapp.models import Shot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(20)]


@pytest.fixture(autouse=True)
def fresh_refusals():
    refusals.reset()
    yield
    assert sending.get().flush(5)
    refusals.reset()


@pytest.fixture
def store(pushy_redis):
    client = redis.Redis.from_url(pushy_redis.url)
    yield client
    client.close()


@pytest.fixture
def errors(caplog):
    caplog.set_level(logging.ERROR, logger="pushy")

    def messages() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]

    return messages


def the_rest(published) -> list[tuple[str, dict]]:
    published.client.publish(END, "{}")
    found = []
    while (message := published.next())[0] != END:
        found.append(message)
    return found


def counted(store) -> dict[str, int]:
    assert sending.get().flush(5)
    return refusals.refusal_counts(store)


def wait_for(errors, text: str, timeout: float = 5) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [m for m in errors() if text in m]
        if found:
            return found[0]
        time.sleep(0.01)
    raise AssertionError(f"no log line with {text!r}")


def test_oversized_saves_go_without_data_and_every_one_is_accounted_for(
    published, store, settings, monkeypatch, errors
):
    settings.PUSHY_SETTINGS = {**settings.PUSHY_SETTINGS, "MAX_UPDATE_BYTES": 500}
    monkeypatch.setattr(refusals, "LOG_INTERVAL", 0.3)
    shots = [Shot.objects.create(title=f"{n}" * 600) for n in range(3)]
    bodies = [body for _, body in the_rest(published)]
    assert [(b["pk"], b["event"]) for b in bodies] == [(s.pk, "create") for s in shots]
    assert all("data" not in b and b["collection"] == "/api/shot/" for b in bodies)
    # The first at once, in full; the second and third in one line, at the
    # end of the interval, written by the sender thread (no fourth save comes).
    (first,) = errors()
    assert first.startswith(
        f"pushy refused the create of testapp.shot pk={shots[0].pk}"
    )
    assert "(too_large): update of testapp.shot" in first
    assert "over MAX_UPDATE_BYTES (500)" in first
    assert first.endswith("published without its data (its pages refetch the object)")
    more = wait_for(errors, "more updates")
    assert more.startswith("pushy refused 2 more updates of testapp.shot (too_large)")
    assert f"the last: the create of pk={shots[2].pk}, published without" in more
    assert refusals.counts["too_large"] == 3
    assert counted(store)["too_large"] == 3


def test_a_raising_data_method_goes_without_data_and_is_counted(
    published, store, monkeypatch, errors
):
    def broken(self):
        raise KeyError("title")

    monkeypatch.setattr(Shot, "get_pushy_data", broken)
    shot = Shot.objects.create(title="x")
    ((channel, body),) = the_rest(published)
    assert channel == "pushy_testapp.shot"
    assert body == {
        "url": f"/api/shot/{shot.pk}/",
        "event": "create",
        "model": "testapp.shot",
        "pk": shot.pk,
        "collection": "/api/shot/",
    }
    assert published.versions  # versioned, like any update
    assert "(data_failed): KeyError: 'title'" in errors()[0]
    assert counted(store) == {
        "too_large": 0, "data_failed": 1, "url_failed": 0, "invalid": 0,
    }  # fmt: skip


def test_a_raising_url_method_resyncs_every_page_and_moves_the_floor(
    published, store, monkeypatch, errors
):
    Shot.objects.create(title="before")
    the_rest(published)
    [epoch] = store.zrangebyscore(versions.book_key(), -1, -1)

    def broken(self):
        raise RuntimeError("no route")

    monkeypatch.setattr(Shot, "get_api_url", broken)
    with transaction.atomic():
        Shot.objects.create(title="lost")
    ((channel, body),) = the_rest(published)
    assert channel == "pushy_:resync"
    assert body == {"models": ["testapp.shot"], "reason": "refused update (url_failed)"}
    [moved] = store.zrangebyscore(versions.book_key(), -1, -1)
    assert moved != epoch  # a new epoch: pages that were away resync as well
    assert "RuntimeError: no route; not published; every page is told" in errors()[0]
    assert counted(store)["url_failed"] == 1


def test_a_rolled_back_refusal_publishes_and_counts_nothing_in_redis(
    published, store, settings
):
    settings.PUSHY_SETTINGS = {**settings.PUSHY_SETTINGS, "MAX_UPDATE_BYTES": 500}
    with pytest.raises(RuntimeError), transaction.atomic():
        Shot.objects.create(title="x" * 600)
        raise RuntimeError("roll back")
    assert the_rest(published) == []
    assert counted(store)["too_large"] == 0
    assert refusals.counts["too_large"] == 1  # it happened, in this process


def test_a_stand_in_is_captured_like_any_update(settings, errors):
    settings.PUSHY_SETTINGS = {**settings.PUSHY_SETTINGS, "MAX_UPDATE_BYTES": 500}
    with capture_updates() as pushed:
        shot = Shot.objects.create(title="x" * 600)
    ((update),) = pushed
    assert (update.pk, update.event, update.data) == (shot.pk, "create", None)
    assert len(errors()) == 1


def test_refusal_counts_names_every_reason(store):
    assert refusals.refusal_counts(store) == dict.fromkeys(REASONS, 0)
