"""A captured table renamed, without its triggers or changed under a running capture.

Before: a renamed table's next notification failed the ORM query, which the
capture took for a lost database: it reconnected (a full resync of every
client), failed again at the next change, and warned the table "has no capture
triggers" when it has them under its new name. Now such a model is reported
once with the fix, its notifications are dropped, the other models stay
captured, and once it is back its pages get one resync.
"""

from __future__ import annotations

import json
import logging
import threading
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from pushy.capture.triggers import install, installed_tables, remove
from tests.capture.helpers import await_tag, next_resync, sql
from tests.captureapp.models import Item, Tag
from tests.support.capture import CaptureProcess

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True, databases=["default", "capture"]),
    pytest.mark.timeout(120),
]

NOT_CAPTURED = "captureapp.item is not captured"
AGAIN = "captureapp.item is captured again"


@pytest.fixture
def renamed():
    """captureapp_item renamed to captureapp_item_old; back, with triggers, after."""
    sql("ALTER TABLE captureapp_item RENAME TO captureapp_item_old")
    yield
    sql("ALTER TABLE IF EXISTS captureapp_item_old RENAME TO captureapp_item")
    install([Item], "capture")


def test_a_table_renamed_under_a_running_capture(published, pushy_redis, request):
    item = Item.objects.create(title="before")
    with CaptureProcess(pushy_redis.url) as capture:
        next_resync(published)  # became active
        request.getfixturevalue("renamed")
        for i in range(4):
            # Changes of the renamed table; Tag is still captured meanwhile.
            sql("UPDATE captureapp_item_old SET title = %s", [f"renamed {i}"])
            Tag.objects.create(slug=f"t{i}")
            assert await_tag(published, f"t{i}") == []  # no resync, no update
        output = capture.wait_for_log(NOT_CAPTURED)
        assert output.count(NOT_CAPTURED) == 1, output
        line = next(x for x in output.splitlines() if NOT_CAPTURED in x)
        assert "table captureapp_item does not exist" in line, line
        assert "triggers for it are on captureapp_item_old" in line, line
        assert "rename the table back" in line and "pushy_triggers" in line, line
        assert "lost the database" not in output, output
        assert "has no capture triggers" not in output, output

        sql("ALTER TABLE captureapp_item_old RENAME TO captureapp_item")
        # Back: one resync of the model (its changes meanwhile were not
        # published), then its changes are captured again.
        assert next_resync(published, timeout=15) == {
            "models": ["captureapp.item"],
            "reason": "captured again",
        }
        capture.wait_for_log(AGAIN)
        Item.objects.filter(pk=item.pk).update(title="after")
        _, body = published.next(10)
        assert (body["url"], body["data"]) == (
            f"/api/item/{item.pk}/",
            {"title": "after"},
        )
        published.assert_nothing_more()
        assert capture.output().count(NOT_CAPTURED) == 1


@pytest.fixture
def in_process(monkeypatch, caplog, published):
    """A Capture run in a thread, checking its tables every 50 ms; once active.

    ``capture.checks`` counts the checks, so a test can wait for some to pass.
    """
    from pushy.capture import runner

    monkeypatch.setattr(runner, "CHECK_INTERVAL", 0.05)
    caplog.set_level(logging.INFO, logger="pushy.capture")
    capture = runner.Capture("capture")
    checks = threading.Semaphore(0)
    check = capture._check_tables

    def counted() -> None:
        check()
        checks.release()

    monkeypatch.setattr(capture, "_check_tables", counted)
    capture.checks = checks
    thread = threading.Thread(target=capture.run, daemon=True)
    thread.start()
    try:
        next_resync(published)  # became active
        yield capture
    finally:
        capture.stop()
        thread.join(10)
    assert not thread.is_alive()


def wait_checks(capture, count: int) -> None:
    """Wait until the capture has checked its tables ``count`` more times."""
    for _ in range(count):
        assert capture.checks.acquire(timeout=10), "the capture stopped checking"


def reports(caplog, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def test_lost_triggers_are_reported_once_and_reinstalling_recovers(
    published, in_process, caplog, request
):
    request.addfinalizer(lambda: install([Item], "capture"))
    remove(["captureapp_item"], "capture")
    wait_checks(in_process, 3)
    (line,) = reports(caplog, NOT_CAPTURED)
    assert "table captureapp_item has no capture triggers" in line, line
    assert "run manage.py pushy_triggers" in line, line
    Tag.objects.create(slug="still")
    assert await_tag(published, "still") == []
    install([Item], "capture")
    assert next_resync(published) == {
        "models": ["captureapp.item"],
        "reason": "captured again",
    }
    wait_checks(in_process, 3)
    assert len(reports(caplog, NOT_CAPTURED)) == 1
    assert len(reports(caplog, AGAIN)) == 1
    published.assert_nothing_more()


def test_a_disabled_trigger_is_reported(published, in_process, caplog, request):
    request.addfinalizer(lambda: install([Item], "capture"))
    sql("ALTER TABLE captureapp_item DISABLE TRIGGER pushy_capture_update")
    wait_checks(in_process, 2)
    (line,) = reports(caplog, NOT_CAPTURED)
    assert "has only 3 of its 4 capture triggers enabled" in line, line


def test_a_column_the_model_lacks_is_reported_once_and_recovers(
    published, in_process, caplog, request
):
    item = Item.objects.create(title="a")
    assert published.next(10)[1]["url"] == f"/api/item/{item.pk}/"
    sql("ALTER TABLE captureapp_item RENAME COLUMN title TO heading")
    request.addfinalizer(
        lambda: sql(
            "DO $$ BEGIN ALTER TABLE captureapp_item RENAME COLUMN heading TO title;"
            " EXCEPTION WHEN undefined_column THEN NULL; END $$"
        )
    )
    for i in range(3):
        sql("UPDATE captureapp_item SET heading = %s", [f"h{i}"])
        Tag.objects.create(slug=f"c{i}")
        assert await_tag(published, f"c{i}") == []
    wait_checks(in_process, 3)
    (line,) = reports(caplog, NOT_CAPTURED)
    assert "rows cannot be loaded from table captureapp_item" in line, line
    assert "title" in line and "manage.py migrate" in line, line
    assert "lost the database" not in caplog.text
    sql("ALTER TABLE captureapp_item RENAME COLUMN heading TO title")
    assert next_resync(published)["models"] == ["captureapp.item"]
    Item.objects.filter(pk=item.pk).update(title="after")
    assert published.next(10)[1]["data"] == {"title": "after"}
    assert len(reports(caplog, NOT_CAPTURED)) == 1


def test_keys_the_model_cannot_take_resync_it_and_the_capture_goes_on(caplog):
    from pushy.capture.runner import Capture

    capture = Capture("capture")
    bad = {"m": "captureapp.item", "e": "u", "x": "1", "k": ["not a number"]}
    capture.handle([json.dumps(bad)])
    assert capture.resyncs.owed == {"captureapp.item": "keys it could not load"}
    assert "could not load captureapp.item keys" in caplog.text


def test_pushy_triggers_and_migrate_with_a_renamed_table(renamed, caplog):
    out = StringIO()
    with pytest.raises(CommandError, match=r"captureapp.item \(table captureapp_it"):
        call_command("pushy_triggers", stdout=out)
    # The others are done; the renamed table's triggers send nothing any more.
    assert "installed: captureapp.tag" in out.getvalue()
    assert "removed: table captureapp_item_old" in out.getvalue()
    assert installed_tables("capture") == {"captureapp_tag"}
    # post_migrate's install skips it too, rather than failing migrate.
    assert install([Item, Tag], "capture") == ["captureapp.tag"]
    assert "not installed on captureapp.item" in caplog.text
