"""Change capture against a real PostgreSQL, a real pushy_capture and Redis.

Each test commits for real (transactional DB), so the triggers' NOTIFY is
delivered; the capture process runs as a subprocess on the same test database.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from django.db import connections, transaction

from tests.captureapp.models import Item, Tag
from tests.gateway.clients import Client
from tests.support.capture import ACTIVE, STANDING_BY, CaptureProcess
from tests.support.gateway import Gateway
from tests.support.postgres import psql_binary

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True, databases=["default", "capture"]),
    pytest.mark.timeout(120),
]


# The gateway's default asks the site whether a client may GET each URL;
# captureapp has no views.
OPEN = {"AUTHORIZE": "pushy.authorization.allow_all"}


@pytest.fixture
def capture(pushy_redis):
    with CaptureProcess(pushy_redis.url) as running:
        yield running


def next_update(published, timeout: float = 10) -> dict:
    """The next update published (resync control messages skipped)."""
    while True:
        channel, body = published.next(timeout)
        if not channel.endswith(":resync"):
            return body


def test_save_is_published_once_by_capture_not_by_signals(published, capture):
    item = Item.objects.create(title="a")
    body = next_update(published)
    assert body == {
        "url": f"/api/item/{item.pk}/",
        "event": "create",
        "model": "captureapp.item",
        "pk": item.pk,
        "collection": "/api/item/",
        "data": {"title": "a"},
    }
    published.assert_nothing_more()


def test_one_transaction_is_coalesced_per_object(published, capture):
    with transaction.atomic(using="capture"):
        item = Item.objects.create(title="a")
        item.title = "b"
        item.save()
        Item.objects.filter(pk=item.pk).update(title="c")
        gone = Item.objects.create(title="gone")
        gone.delete()
    body = next_update(published)
    assert (body["event"], body["pk"]) == ("create", item.pk)
    assert body["data"] == {"title": "c"}
    published.assert_nothing_more()


def test_bulk_create_bulk_update_and_queryset_delete(published, capture):
    items = Item.objects.bulk_create([Item(title=f"t{i}") for i in range(5)])
    created = [next_update(published) for _ in items]
    assert sorted(b["pk"] for b in created) == sorted(i.pk for i in items)
    assert {b["event"] for b in created} == {"create"}

    for item in items:
        item.title = "bulk"
    Item.objects.bulk_update(items, ["title"])
    updated = [next_update(published) for _ in items]
    assert {(b["event"], b["data"]["title"]) for b in updated} == {("update", "bulk")}

    Item.objects.filter(pk__in=[i.pk for i in items[:2]]).delete()
    deleted = [next_update(published) for _ in range(2)]
    assert sorted((b["event"], b["url"]) for b in deleted) == sorted(
        ("delete", f"/api/item/{i.pk}/") for i in items[:2]
    )
    assert all("data" not in b for b in deleted)
    published.assert_nothing_more()


def test_string_primary_keys(published, capture):
    Tag.objects.bulk_create([Tag(slug="x-1"), Tag(slug="o'neil")])
    bodies = [next_update(published) for _ in range(2)]
    assert sorted(b["url"] for b in bodies) == ["/api/tag/o'neil/", "/api/tag/x-1/"]


def test_rolled_back_transaction_sends_nothing(published, capture):
    item = Item.objects.create(title="a")
    next_update(published)
    with pytest.raises(RuntimeError), transaction.atomic(using="capture"):
        Item.objects.update(title="rolled back")
        raise RuntimeError
    Item.objects.filter(pk=item.pk).update(title="after")
    body = next_update(published)
    assert body["data"] == {"title": "after"}
    published.assert_nothing_more()


def test_raw_sql_from_psql_in_another_process(published, capture):
    item = Item.objects.create(title="a")
    next_update(published)
    db = connections["capture"].settings_dict
    subprocess.run(
        [psql_binary(), "-h", db["HOST"], "-p", str(db["PORT"]), "-U", db["USER"],
         "-d", db["NAME"], "-v", "ON_ERROR_STOP=1",
         "-c", f"UPDATE captureapp_item SET title = 'from psql' WHERE id = {item.pk}"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    body = next_update(published)
    assert (body["event"], body["pk"], body["data"]) == (
        "update",
        item.pk,
        {"title": "from psql"},
    )


def test_capture_asks_for_a_resync_when_active_and_after_a_truncate(
    published, pushy_redis
):
    with CaptureProcess(pushy_redis.url):
        # Becoming active: what changed while nobody captured was lost.
        channel, body = published.next(10)
        assert (channel, body) == (
            "pushy_:resync",
            {
                "models": ["captureapp.item", "captureapp.tag"],
                "reason": "capture became active",
            },
        )
        with connections["capture"].cursor() as cursor:
            cursor.execute("TRUNCATE captureapp_tag")
        channel, body = published.next(10)
        assert (channel, body) == (
            "pushy_:resync",
            {"models": ["captureapp.tag"], "reason": "a truncate"},
        )


def test_update_of_10000_rows_reaches_a_subscribed_client(pushy_redis):
    Item.objects.bulk_create([Item(title="old") for _ in range(10_000)])
    # Room for the whole burst, and no per-member authorization: this test is
    # about capture, not slow clients or permissions.
    settings = {
        "SEND_QUEUE_SIZE": 20_000,
        "SEND_QUEUE_BYTES": 16 * 1024 * 1024,
        **OPEN,
    }
    with (
        Gateway(pushy_redis.url, pushy_settings=settings) as gateway,
        CaptureProcess(pushy_redis.url),
    ):
        client = Client(gateway.ws_url, timeout=30)
        # A resync may come first: the capture process asks for one (a new
        # version epoch) when it becomes active.
        client.send(action="subscribe", url="/api/item/")
        client.recv_until(lambda m: m["type"] == "subscribed")
        assert Item.objects.update(title="new") == 10_000
        seen = set()
        while len(seen) < 10_000:
            message = client.recv()
            if message["type"] == "update":
                assert (message["event"], message["data"]) == (
                    "update",
                    {"title": "new"},
                )
                seen.add(message["pk"])
        assert seen == set(Item.objects.values_list("pk", flat=True))
        client.close()


def test_sigkill_the_active_process_another_takes_over(pushy_redis):
    first = CaptureProcess(pushy_redis.url).start()
    second = CaptureProcess(pushy_redis.url).start(wait_for=STANDING_BY)
    try:
        with Gateway(pushy_redis.url, pushy_settings=OPEN) as gateway:
            client = Client(gateway.ws_url, timeout=15)
            client.subscribe("/api/item/")
            first.kill()
            second.wait_for_log(ACTIVE, timeout=15)
            # Nobody captured for a while: pages are told to resync.
            client.recv_until(lambda m: m["type"] == "resync", timeout=10)
            item = Item.objects.create(title="after takeover")
            message = client.recv_until(lambda m: m["type"] == "update", timeout=10)
            assert (message["event"], message["pk"]) == ("create", item.pk)
            client.close()
    finally:
        first.stop()
        second.stop()


def test_pushy_triggers_removes_and_reinstalls(settings, request):
    from io import StringIO

    from django.core.management import call_command

    from pushy.capture.triggers import installed_tables, sync

    request.addfinalizer(lambda: sync("capture", ["captureapp.item", "captureapp.tag"]))
    assert installed_tables("capture") == {"captureapp_item", "captureapp_tag"}
    out = StringIO()
    call_command("pushy_triggers", "--remove", stdout=out)
    assert installed_tables("capture") == set()
    assert "removed: table captureapp_item" in out.getvalue()
    with CaptureProcess(settings.PUSHY_SETTINGS["REDIS_URL"]) as capture:
        capture.wait_for_log(
            "captureapp.tag is not captured: its table captureapp_tag has no capture"
        )
    # Only Item captured now: Tag's triggers are not put back.
    settings.PUSHY_SETTINGS = {
        **settings.PUSHY_SETTINGS,
        "CAPTURE": ["captureapp.item"],
    }
    call_command("pushy_triggers", stdout=out)
    assert installed_tables("capture") == {"captureapp_item"}
    assert "installed: captureapp.item" in out.getvalue()


def test_capture_survives_losing_its_database_connection(published, pushy_redis):
    with CaptureProcess(pushy_redis.url) as capture:
        assert published.next(10)[0] == "pushy_:resync"  # becoming active
        with connections["capture"].cursor() as cursor:
            # The active process's session: the one holding the advisory lock.
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks "
                "WHERE locktype = 'advisory' AND granted "
                "AND database = (SELECT oid FROM pg_database "
                "WHERE datname = current_database())"
            )
            assert cursor.fetchall() == [(True,)]
        capture.wait_for_log("lost the database", timeout=15)
        capture.wait_for_log(ACTIVE, timeout=15, count=2)
        # What changed meanwhile was not seen: pages are told to resync.
        assert published.next(10)[0] == "pushy_:resync"
        item = Item.objects.create(title="after")
        body = next_update(published)
        assert (body["event"], body["pk"]) == ("create", item.pk)


def test_updates_redis_refused_become_a_resync_once_it_is_back(
    settings, published, pushy_redis, monkeypatch
):
    from pushy import publisher, versions
    from pushy.capture import resync
    from pushy.capture.runner import Capture
    from pushy.rendering import current_version

    monkeypatch.setattr(resync, "MIN_INTERVAL", 0)
    item = Item.objects.create(title="a")
    notification = json.dumps(
        {"m": "captureapp.item", "e": "u", "x": "1", "k": [item.pk]}
    )
    settings.PUSHY_SETTINGS = {
        **settings.PUSHY_SETTINGS,
        "REDIS_URL": "redis://127.0.0.1:1/0",
    }
    capture = Capture("capture")
    capture.handle([notification])
    assert capture.resyncs.owed == {"captureapp.item": "a publish failed"}
    capture.resyncs.settle()  # Redis still down: still owed
    assert capture.resyncs.owed == {"captureapp.item": "a publish failed"}
    settings.PUSHY_SETTINGS = {**settings.PUSHY_SETTINGS, "REDIS_URL": pushy_redis.url}
    before = current_version()
    capture.resyncs.settle()
    assert (capture.resyncs.owed, capture.resyncs.epoch) == ({}, False)
    assert published.next(5) == (
        "pushy_:resync",
        {"models": ["captureapp.item"], "reason": "a publish failed"},
    )
    published.assert_nothing_more()
    # And a new version epoch: a page that held ``before`` resyncs.
    lookup = versions.Snapshot.from_reply(
        [],
        publisher.get_client().eval(
            versions.LOOKUP_SCRIPT, 1, versions.book_key(), *versions.lookup_args([])
        ),
    )
    assert lookup.floor > before


def test_10000_changed_rows_are_a_handful_of_notifications():
    import psycopg

    from pushy.capture.changes import keys

    items = Item.objects.bulk_create([Item(title="old") for _ in range(10_000)])
    pks = sorted(item.pk for item in items)
    db = connections["capture"].settings_dict
    with psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"],
        autocommit=True,
    ) as listener:  # fmt: skip
        listener.execute('LISTEN "pushy_capture"')
        Item.objects.update(title="all")  # one run of consecutive keys
        Item.objects.filter(pk__in=pks[::2]).update(title="every other")
        with connections["capture"].cursor() as cursor:
            cursor.execute("SELECT pg_notify('pushy_capture', 'end')")
        payloads = []
        for notification in listener.notifies(timeout=30):
            if notification.payload == "end":
                break
            payloads.append(notification.payload)
    everything, every_other = (
        [p for p in payloads if f'"k" : [[{pks[0]}, {pks[-1]}]]' in p],
        [p for p in payloads if '"k" : [[' not in p],
    )
    assert len(everything) == 1
    assert 1 < len(every_other) <= 10
    assert max(len(p.encode()) for p in payloads) < 8000
    assert sorted(k for p in every_other for k in keys(json.loads(p)["k"])) == pks[::2]
