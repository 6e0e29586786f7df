"""Unit tests: notifications to changes, the capture settings and their checks.

No PostgreSQL here; tests/capture/test_capture.py runs the real thing.
"""

from __future__ import annotations

import json

import pytest
from django.core.checks import run_checks

from pushy.capture.changes import collect
from pushy.capture.runner import chunks, lock_key
from pushy.captured import captured_labels, is_captured
from pushy.updates import fold
from tests.captureapp.models import Item
from tests.testapp.models import Shot

LABELS = frozenset({"captureapp.item", "captureapp.tag"})


def note(event: str, keys: list | None, model: str = "captureapp.item") -> str:
    fields = {"m": model, "e": event, "x": "1"}
    if keys is not None:
        fields["k"] = keys
    return json.dumps(fields)


@pytest.mark.parametrize(
    ("events", "result"),
    [
        (["create"], "create"),
        (["create", "update", "update"], "create"),
        (["create", "delete"], None),
        (["update", "delete"], "delete"),
        (["delete", "create"], "update"),
        (["update", "update"], "update"),
    ],
)
def test_fold_follows_the_signal_paths_coalescing(events, result):
    folded = None
    for event in events:
        folded = fold(folded, event)
    assert folded == result


def test_collect_coalesces_per_object_in_order():
    changes = collect(
        [note("i", [1, 2]), note("u", [1, 3]), note("d", [2]), note("u", [4], "x.y")],
        LABELS,
    )
    assert changes.events == {
        ("captureapp.item", 1): "create",
        ("captureapp.item", 3): "update",
    }
    assert changes.resync == {}
    assert changes.by_model() == {"captureapp.item": {"create": [1], "update": [3]}}


def test_collect_resyncs_a_truncate_and_a_key_too_long_to_send():
    changes = collect([note("t", None, "captureapp.tag"), note("u", [None, 5])], LABELS)
    assert changes.resync == {
        "captureapp.tag": "a truncate",
        "captureapp.item": "a key too long to notify",
    }
    assert changes.events == {("captureapp.item", 5): "update"}


def test_collect_ignores_what_is_not_a_notification_of_pushys(caplog):
    changes = collect(["nope", json.dumps({"m": "captureapp.item", "e": "u"})], LABELS)
    assert not changes.events and not changes.resync
    assert caplog.text.count("ignores a notification") == 2


def test_chunks_and_lock_key():
    assert list(chunks([1, 2, 3, 4, 5], 2)) == [[1, 2], [3, 4], [5]]
    assert lock_key("pushy_capture") == lock_key("pushy_capture")
    assert lock_key("pushy_capture") != lock_key("other_capture")
    assert -(2**63) <= lock_key("pushy_capture") < 2**63


def test_captured_labels_follow_the_settings(settings):
    assert captured_labels() == LABELS
    settings.PUSHY_SETTINGS = {**settings.PUSHY_SETTINGS, "CAPTURE": True}
    assert "testapp.shot" in captured_labels()
    settings.PUSHY_SETTINGS = {**settings.PUSHY_SETTINGS, "CAPTURE": ()}
    assert captured_labels() == frozenset()


def test_only_captured_models_on_the_capture_database_are_captured(settings):
    assert is_captured(Item, "capture")
    assert not is_captured(Item, "default")  # not the CAPTURE_DATABASE
    assert not is_captured(Shot, "default")  # not in CAPTURE
    # CAPTURE on SQLite: the signal path stays.
    settings.PUSHY_SETTINGS = {
        **settings.PUSHY_SETTINGS,
        "CAPTURE": True,
        "CAPTURE_DATABASE": "default",
    }
    assert not is_captured(Shot, "default")


@pytest.mark.django_db
def test_signals_still_publish_models_that_are_not_captured(pushy_updates):
    shot = Shot.objects.create(title="a")
    assert [(u.event, u.pk) for u in pushy_updates] == [("create", shot.pk)]


def _ids(settings, **capture) -> list[str]:
    settings.PUSHY_SETTINGS = {**settings.PUSHY_SETTINGS, **capture}
    return [m.id for m in run_checks(tags=["pushy"])]


def test_checks(settings):
    assert _ids(settings) == []
    assert _ids(settings, CAPTURE="captureapp.item") == ["pushy.E040"]
    assert _ids(settings, CAPTURE=["testapp.unpushed"]) == ["pushy.E041"]
    assert _ids(settings, CAPTURE=True, CAPTURE_DATABASE="nope") == ["pushy.E042"]
    assert _ids(settings, CAPTURE=True, CAPTURE_DATABASE="default") == ["pushy.W040"]


def test_runs_of_integer_keys_are_expanded(caplog):
    changes = collect([note("u", [[3, 6], 9, [11, 11], ["a", "b"]])], LABELS)
    assert [pk for _, pk in changes.events] == [3, 4, 5, 6, 9, 11]
    assert "ignores a key" in caplog.text
