"""An update pushy cannot publish as built never fails a save, and still reaches
its pages: without its data, or as a resync of every page (issue 20 item 4)."""

import logging
import time

import pytest
import redis
from django.db import transaction

import pushy
from pushy import publisher, refusals, sending
from pushy.exceptions import InvalidUpdate
from pushy.messages import Update
from pushy.testing import capture_updates
from tests.redis_subscriber import END
from tests.testapp.models import Shot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(30)]


def errors(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.fixture(autouse=True)
def fresh_refusal_log():
    refusals.reset()
    yield
    refusals.reset()


def resync_of_every_page(published, model="testapp.shot"):
    """The next publish is LOSE_SCRIPT's resync request for ``model``."""
    channel, body = published.next()
    assert channel == "pushy_:resync", (channel, body)
    assert body["models"] == [model] and "refused update" in body["reason"]


def test_a_save_with_a_list_collection_stands_and_resyncs_every_page(
    published, monkeypatch, caplog
):
    monkeypatch.setattr(Shot, "get_api_list_url", lambda self: ["/api/shot/"])
    with caplog.at_level(logging.ERROR, logger="pushy"):
        shot = Shot.objects.create(title="kept")
    assert Shot.objects.filter(pk=shot.pk).exists()
    assert errors(caplog) == [
        f"pushy refused the create of testapp.shot pk={shot.pk} (url_failed): "
        "testapp.shot.get_api_list_url() returned a list, not a str or None; "
        "not published; every page is told to resync instead"
    ]
    # Its collection is unknown, so who should hear of it is: every page does.
    resync_of_every_page(published)
    published.assert_nothing_more()


def test_a_save_whose_data_has_nan_goes_without_data(published, monkeypatch, caplog):
    monkeypatch.setattr(Shot, "get_pushy_data", lambda self: {"x": float("nan")})
    with caplog.at_level(logging.ERROR, logger="pushy"):
        shot = Shot.objects.create(title="nan")
    (message,) = errors(caplog)
    assert "(data_failed): testapp.shot.get_pushy_data() returned a dict" in message
    assert "published without its data (its pages refetch the object)" in message
    body = published.next()[1]
    assert (body["pk"], body["event"], "data" in body) == (shot.pk, "create", False)
    assert body["collection"] == "/api/shot/"
    published.assert_nothing_more()


def test_a_get_pushy_data_that_raises_goes_without_data(published, monkeypatch, caplog):
    def broken(self):
        raise RuntimeError("site bug")

    monkeypatch.setattr(Shot, "get_pushy_data", broken)
    with caplog.at_level(logging.ERROR, logger="pushy"):
        shot = Shot.objects.create(title="kept")
    (message,) = errors(caplog)
    assert message.startswith(
        f"pushy refused the create of testapp.shot pk={shot.pk} (data_failed): "
        "RuntimeError: site bug; published without its data"
    )
    assert "site bug" in caplog.records[-1].exc_text
    assert "data" not in published.next()[1]
    published.assert_nothing_more()


def test_a_get_api_url_that_raises_never_fails_the_save(published, monkeypatch, caplog):
    def broken(self):
        raise RuntimeError("site bug")

    monkeypatch.setattr(Shot, "get_api_url", broken)
    with caplog.at_level(logging.ERROR, logger="pushy"):
        shot = Shot.objects.create(title="kept")
    assert Shot.objects.filter(pk=shot.pk).exists()
    (message,) = errors(caplog)
    assert message.startswith(
        f"pushy refused the create of testapp.shot pk={shot.pk} (url_failed): "
        "RuntimeError: site bug; not published; every page is told to resync"
    )
    assert message.endswith("fix the model method in the traceback")
    assert "site bug" in caplog.records[-1].exc_text
    resync_of_every_page(published)
    published.assert_nothing_more()


def test_an_oversized_save_goes_without_data_with_the_rest_of_the_transaction(
    published, settings, caplog
):
    settings.PUSHY_SETTINGS = {**settings.PUSHY_SETTINGS, "MAX_UPDATE_BYTES": 2000}
    with caplog.at_level(logging.ERROR, logger="pushy"), transaction.atomic():
        small = Shot.objects.create(title="small")
        big = Shot.objects.create(title="x" * 3000)
    assert Shot.objects.filter(pk=big.pk).exists()
    first, second = published.bodies(2)
    assert first["pk"] == small.pk and first["data"] == {"title": "small"}
    assert second["pk"] == big.pk and "data" not in second
    published.assert_nothing_more()
    assert "over MAX_UPDATE_BYTES (2,000)" in errors(caplog)[0]
    assert "(too_large)" in errors(caplog)[0]


def test_notify_and_broadcast_raise_invalid_update(published, monkeypatch):
    shot = Shot.objects.create(title="t")
    published.next()
    monkeypatch.setattr(Shot, "get_api_url", lambda self: None)
    with pytest.raises(InvalidUpdate, match=r"get_api_url\(\) returned None"):
        pushy.notify(shot)
    with pytest.raises(InvalidUpdate, match=r"get_api_url\(\) returned None"):
        pushy.broadcast(shot)
    published.assert_nothing_more()


def test_publish_checks_updates_made_by_hand_even_when_captured(settings, published):
    settings.PUSHY_SETTINGS = {**settings.PUSHY_SETTINGS, "MAX_UPDATE_BYTES": 100}
    ok = Update(url="/a/1/", event="update", model="testapp.shot", pk=1)
    big = ok.replace(data={"x": "y" * 100})
    with pytest.raises(InvalidUpdate):
        publisher.publish([ok, big])  # all or nothing: ok is not sent either
    published.assert_nothing_more()
    with capture_updates() as captured, pytest.raises(InvalidUpdate):
        publisher.publish([big])
    assert captured == []
    with capture_updates() as captured:
        publisher.publish([ok])
    assert captured == [ok]


def test_broadcast_command_reports_an_invalid_update(manage, published):
    shot = Shot.objects.create(title="x" * 2_000_000)  # refused and logged
    assert "data" not in published.next()[1]  # the save's stand-in, without data
    result = manage("pushy_test_broadcast", "testapp.shot", str(shot.pk))
    assert result.returncode == 1
    assert "over MAX_UPDATE_BYTES" in result.stderr
    published.assert_nothing_more()


def test_a_model_without_get_api_url_is_explained_once_and_counted(
    published, pushy_redis, monkeypatch, caplog
):
    from pushy import signals

    monkeypatch.delattr(Shot, "get_api_url")
    monkeypatch.setattr(refusals, "LOG_INTERVAL", 0.3)
    with caplog.at_level(logging.ERROR, logger="pushy"):
        for n in range(12):
            Shot.objects.create(title=str(n))
        assert Shot.objects.count() == 12  # every save stood
        # The first in full; the 11 others within the interval are left out,
        # and counted in a line the sender thread writes when it is over.
        first = errors(caplog)[0]
        assert first.startswith("pushy refused the create of testapp.shot pk=")
        assert "has neither get_api_url() nor get_absolute_url(): add one" in first
        assert "PUSHY_SETTINGS['MODELS']" in first
        line = wait_for(caplog, "pushy refused 11 more updates of testapp.shot")
    assert "(url_failed) in the last" in line and "left out of the log" in line
    assert signals.failures["testapp.shot"] == 12
    assert refusals.counts["url_failed"] == 12
    # Twelve losses, but every page resyncs at most once a second for them:
    # one resync, or two if the first went before the others were counted.
    assert sending.get().flush(5)
    resyncs = the_rest(published)
    assert 1 <= len(resyncs) <= 2
    assert all(channel == "pushy_:resync" for channel, _ in resyncs)
    store = redis.Redis.from_url(pushy_redis.url)
    assert refusals.refusal_counts(store)["url_failed"] == 12
    store.close()


def the_rest(published):
    """Everything published so far, up to a marker published now."""
    published.client.publish(END, "{}")
    found = []
    while (message := published.next())[0] != END:
        found.append(message)
    return found


def wait_for(caplog, text, timeout=5.0):
    """The first log line holding ``text``, written by any thread."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in caplog.records:
            if text in record.getMessage():
                return record.getMessage()
        time.sleep(0.02)
    raise AssertionError(f"no log line with {text!r} within {timeout}s")
