"""What saves, deletes and notify() publish to a real Redis, transactions included."""

import logging
from unittest import mock

import pytest
import redis
from django.db import transaction

import pushy
from pushy import sending, versions
from pushy.exceptions import ModelNotConfigured
from tests.support.servers import RedisServer
from tests.testapp.models import Note, Session, Shot, Unpushed

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(30)]


class Rollback(Exception):
    pass


def shot_body(shot, event, title=None):
    return {
        "url": f"/api/shot/{shot.pk}/",
        "event": event,
        "model": "testapp.shot",
        "pk": shot.pk,
        "collection": "/api/shot/",
        "data": {"title": title if title is not None else shot.title},
    }


def test_create_update_delete_in_autocommit(published):
    shot = Shot.objects.create(title="one")
    assert published.next() == ("pushy_testapp.shot", shot_body(shot, "create"))
    shot.title = "two"
    shot.save()
    assert published.next()[1] == shot_body(shot, "update")
    pk = shot.pk
    shot.delete()
    channel, body = published.next()
    assert channel == "pushy_testapp.shot"
    assert body["event"] == "delete" and body["pk"] == pk
    assert body["url"] == f"/api/shot/{pk}/"
    published.assert_nothing_more()


def test_collection_defaults_to_the_parent_url(published):
    session = Session.objects.create(name="s")
    assert published.next() == (
        "pushy_testapp.session",
        {
            "url": f"/api/session/{session.pk}/",
            "event": "create",
            "model": "testapp.session",
            "pk": session.pk,
            "collection": "/api/session/",
        },
    )


def test_string_primary_key(published):
    Note.objects.create(slug="hello")
    assert published.next()[1]["pk"] == "hello"


def test_unconfigured_models_publish_nothing(published):
    Unpushed.objects.create(name="x")
    published.assert_nothing_more()


def test_transaction_waits_for_commit(published):
    with transaction.atomic():
        shot = Shot.objects.create(title="a")
        published.assert_nothing_more()
    assert published.next()[1] == shot_body(shot, "create")


def test_create_then_updates_is_one_create(published):
    with transaction.atomic():
        shot = Shot.objects.create(title="a")
        shot.title = "b"
        shot.save()
        shot.title = "c"
        shot.save()
    assert published.next()[1] == shot_body(shot, "create", title="c")
    published.assert_nothing_more()


def test_several_updates_are_one_update(published):
    shot = Shot.objects.create(title="a")
    published.next()
    with transaction.atomic():
        for title in "bcd":
            shot.title = title
            shot.save()
    assert published.next()[1] == shot_body(shot, "update", title="d")
    published.assert_nothing_more()


def test_update_then_delete_is_one_delete(published):
    shot = Shot.objects.create(title="a")
    published.next()
    pk = shot.pk
    with transaction.atomic():
        shot.title = "b"
        shot.save()
        shot.delete()
    body = published.next()[1]
    assert (body["event"], body["pk"]) == ("delete", pk)
    published.assert_nothing_more()


def test_created_and_deleted_in_one_transaction_sends_nothing(published):
    with transaction.atomic():
        Shot.objects.create(title="a").delete()
    published.assert_nothing_more()


def test_rolled_back_transaction_sends_nothing(published):
    with pytest.raises(Rollback), transaction.atomic():
        Shot.objects.create(title="a")
        raise Rollback
    published.assert_nothing_more()
    # The next transaction starts clean.
    with transaction.atomic():
        shot = Shot.objects.create(title="b")
    assert published.next()[1] == shot_body(shot, "create")
    published.assert_nothing_more()


def test_rolled_back_savepoint_inside_committed_transaction(published):
    with transaction.atomic():
        kept = Shot.objects.create(title="kept")
        with pytest.raises(Rollback), transaction.atomic():
            kept.title = "changed in the savepoint"
            kept.save()
            Shot.objects.create(title="lost")
            raise Rollback
        kept.refresh_from_db()
    # The create survives, coalesced only with what was not rolled back.
    assert published.next()[1] == shot_body(kept, "create", title="kept")
    published.assert_nothing_more()


def test_rolled_back_savepoint_keeps_earlier_and_later_changes(published):
    first = Shot.objects.create(title="first")
    published.next()
    with transaction.atomic():
        first.title = "updated"
        first.save()
        with pytest.raises(Rollback), transaction.atomic():
            Shot.objects.get(pk=first.pk).delete()
            raise Rollback
        second = Shot.objects.create(title="second")
    assert published.bodies(2) == [
        shot_body(first, "update", title="updated"),
        shot_body(second, "create"),
    ]
    published.assert_nothing_more()


def test_released_savepoint_is_published(published):
    with transaction.atomic():
        with transaction.atomic():
            shot = Shot.objects.create(title="inner")
    assert published.next()[1] == shot_body(shot, "create")


def test_one_commit_is_one_round_trip(published):
    Shot.objects.create(title="connects")
    published.next()
    sender = sending.get()
    before = sender.stats["attempts"]
    # The process's one sender outlives tests: count this test's failures only.
    failures = sender.stats["failures"]
    with mock.patch.object(
        redis.connection.Connection,
        "send_packed_command",
        autospec=True,
        side_effect=redis.connection.Connection.send_packed_command,
    ) as send:
        with transaction.atomic():
            shots = [Shot.objects.create(title=str(i)) for i in range(3)]
    # One pipeline, written once, on the saving thread (the queue was empty).
    assert sender.stats["attempts"] - before == 1
    assert send.call_count == 1
    assert [body["pk"] for body in published.bodies(3)] == [s.pk for s in shots]
    assert sender.stats["failures"] == failures


def test_notify_many_on_a_queryset(published):
    shots = [Shot.objects.create(title=str(i)) for i in range(3)]
    published.bodies(3)
    Shot.objects.filter(pk__in=[s.pk for s in shots[:2]]).update(title="bulk")
    with transaction.atomic():
        pushy.notify_many(Shot.objects.filter(title="bulk").order_by("pk"))
    assert published.bodies(2) == [
        shot_body(shots[0], "update", title="bulk"),
        shot_body(shots[1], "update", title="bulk"),
    ]
    published.assert_nothing_more()


def test_notify_after_bulk_create_with_event(published):
    created = Shot.objects.bulk_create([Shot(title="x"), Shot(title="y")])
    pushy.notify_many(created, event="create")
    assert [b["event"] for b in published.bodies(2)] == ["create", "create"]


def test_notify_is_transaction_aware(published):
    shot = Shot.objects.create(title="a")
    published.next()
    with pytest.raises(Rollback), transaction.atomic():
        pushy.notify(shot)
        raise Rollback
    published.assert_nothing_more()
    pushy.notify(shot, event="update")
    assert published.next()[1] == shot_body(shot, "update")


def test_notify_refuses_unconfigured_models():
    with pytest.raises(ModelNotConfigured, match="testapp.unpushed"):
        pushy.notify(Unpushed.objects.create(name="x"))


def test_redis_down_never_breaks_a_save(settings, caplog):
    with RedisServer() as server:
        settings.PUSHY_SETTINGS = {**settings.PUSHY_SETTINGS, "REDIS_URL": server.url}
        from tests.redis_subscriber import Subscriber

        subscriber = Subscriber(server.url)
        Shot.objects.create(title="before")
        assert subscriber.next()[1]["event"] == "create"
        subscriber.close()
        server.stop()

        with caplog.at_level(logging.WARNING, logger="pushy"):
            shot = Shot.objects.create(title="while down")
        assert Shot.objects.filter(pk=shot.pk).exists()
        # Not "could not publish": the update waits for Redis, and says so.
        (warning,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert warning.levelno == logging.WARNING
        assert "has not confirmed 1 update within 50 ms" in warning.getMessage()
        assert "they stay queued" in warning.getMessage()

        server.start()  # same port: pushy reconnects by itself, and sends it
        assert sending.get().flush(10)
        store = redis.Redis.from_url(server.url)
        book = versions.book_key()
        assert store.zscore(book, versions.url_member(f"/api/shot/{shot.pk}/"))
        store.close()
        subscriber = Subscriber(server.url)
        shot.save()
        assert subscriber.next()[1] == shot_body(shot, "update")
        subscriber.close()


def test_many_saves_in_one_transaction(published):
    with transaction.atomic():
        shots = Shot.objects.bulk_create([Shot(title=str(i)) for i in range(500)])
        for shot in shots:
            shot.save()
            shot.save()
    bodies = published.bodies(500)
    assert [(b["pk"], b["event"]) for b in bodies] == [(s.pk, "update") for s in shots]
    published.assert_nothing_more()
