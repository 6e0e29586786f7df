"""An update pushy cannot publish never reaches Redis, and never fails a save."""

import logging

import pytest
from django.db import transaction

import pushy
from pushy import publisher
from pushy.exceptions import InvalidUpdate
from pushy.messages import Update
from pushy.testing import capture_updates
from tests.testapp.models import Shot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(30)]


def errors(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_save_with_a_list_collection_stands_logs_and_publishes_nothing(
    published, monkeypatch, caplog
):
    monkeypatch.setattr(Shot, "get_api_list_url", lambda self: ["/api/shot/"])
    with caplog.at_level(logging.ERROR, logger="pushy"):
        shot = Shot.objects.create(title="kept")
    assert Shot.objects.filter(pk=shot.pk).exists()
    assert errors(caplog) == [
        "pushy did not publish a create of testapp.shot: "
        "testapp.shot.get_api_list_url() returned a list, not a str or None"
    ]
    published.assert_nothing_more()


def test_a_save_whose_data_has_nan_publishes_nothing(published, monkeypatch, caplog):
    monkeypatch.setattr(Shot, "get_pushy_data", lambda self: {"x": float("nan")})
    with caplog.at_level(logging.ERROR, logger="pushy"):
        Shot.objects.create(title="nan")
    assert "get_pushy_data() returned a dict that is not JSON" in errors(caplog)[0]
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
        f"pushy did not publish a create of testapp.shot pk={shot.pk}: "
        "building its update raised; fix the model method in the traceback"
    )
    assert "site bug" in caplog.records[-1].exc_text
    published.assert_nothing_more()


def test_an_oversized_save_is_refused_and_the_rest_of_the_transaction_goes(
    published, settings, caplog
):
    settings.PUSHY_SETTINGS = {**settings.PUSHY_SETTINGS, "MAX_UPDATE_BYTES": 2000}
    with caplog.at_level(logging.ERROR, logger="pushy"), transaction.atomic():
        small = Shot.objects.create(title="small")
        big = Shot.objects.create(title="x" * 3000)
    assert Shot.objects.filter(pk=big.pk).exists()
    assert published.next()[1]["pk"] == small.pk
    published.assert_nothing_more()
    assert "over MAX_UPDATE_BYTES (2,000)" in errors(caplog)[0]


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
    result = manage("pushy_test_broadcast", "testapp.shot", str(shot.pk))
    assert result.returncode == 1
    assert "over MAX_UPDATE_BYTES" in result.stderr
    published.assert_nothing_more()


def test_a_model_without_get_api_url_is_explained_once_and_counted(
    published, monkeypatch, caplog
):
    from pushy import signals

    monkeypatch.delattr(Shot, "get_api_url")
    with caplog.at_level(logging.ERROR, logger="pushy"):
        for n in range(12):
            Shot.objects.create(title=str(n))
    assert Shot.objects.count() == 12  # every save stood
    first, tenth = errors(caplog)  # the first in full, then at the 10th
    assert first.startswith("pushy did not publish a create of testapp.shot: ")
    assert "has no get_api_url() method: add one" in first
    assert "PUSHY_SETTINGS['MODELS']" in first
    assert tenth.startswith("pushy still cannot publish updates of testapp.shot (10")
    assert signals.failures["testapp.shot"] == 12
    published.assert_nothing_more()
