"""pushy.testing: capturing updates instead of sending them."""

import pytest
from django.db import transaction
from django.test import TestCase, TransactionTestCase

from pushy.testing import capture_updates
from tests.testapp.models import Shot

pytestmark = pytest.mark.timeout(30)


@pytest.mark.django_db(transaction=True)
def test_capture_collects_and_sends_nothing(published):
    with capture_updates() as pushed:
        shot = Shot.objects.create(title="a")
        with transaction.atomic():
            shot.title = "b"
            shot.save()
    assert [(u.event, u.pk, u.data) for u in pushed] == [
        ("create", shot.pk, {"title": "a"}),
        ("update", shot.pk, {"title": "b"}),
    ]
    published.assert_nothing_more()
    # Outside the block, updates go to Redis again.
    shot.save()
    assert published.next()[1]["event"] == "update"


@pytest.mark.django_db(transaction=True)
def test_capture_sees_nothing_of_a_rollback():
    with capture_updates() as pushed:
        with pytest.raises(RuntimeError), transaction.atomic():
            Shot.objects.create(title="a")
            raise RuntimeError("roll back")
    assert pushed == []


@pytest.mark.django_db
def test_capture_inside_a_test_transaction(django_capture_on_commit_callbacks):
    with capture_updates() as pushed:
        with django_capture_on_commit_callbacks(execute=True):
            Shot.objects.create(title="a")
    assert [u.event for u in pushed] == ["create"]


@pytest.mark.django_db(transaction=True)
def test_pytest_fixture(pushy_updates, published):
    shot = Shot.objects.create(title="a")
    shot.delete()
    assert [u.event for u in pushy_updates] == ["create", "delete"]
    published.assert_nothing_more()


@pytest.mark.django_db
def test_fixture_in_a_test_transaction_sees_saves_at_once(pushy_updates, published):
    # pytest-django's db: the test transaction never commits.
    shot = Shot.objects.create(title="a")
    assert [(u.event, u.pk) for u in pushy_updates] == [("create", shot.pk)]
    shot.title = "b"
    shot.save()
    assert [u.event for u in pushy_updates] == ["create", "update"]
    published.assert_nothing_more()


@pytest.mark.django_db
def test_capture_after_an_earlier_save_in_the_same_transaction():
    shot = Shot.objects.create(title="before")  # queued before the block
    with capture_updates() as pushed:
        shot.title = "inside"
        shot.save()
    assert [(u.event, u.data) for u in pushed] == [("update", {"title": "inside"})]


@pytest.mark.django_db
def test_capture_leaves_out_a_rolled_back_savepoint():
    with capture_updates() as pushed:
        kept = Shot.objects.create(title="kept")
        with pytest.raises(RuntimeError), transaction.atomic():
            Shot.objects.create(title="undone")
            raise RuntimeError("roll back the savepoint")
    assert [u.pk for u in pushed] == [kept.pk]


@pytest.mark.django_db
def test_capture_with_on_commit_callbacks_after_an_earlier_save(
    django_capture_on_commit_callbacks,
):
    shot = Shot.objects.create(title="before")
    with capture_updates() as pushed:
        with django_capture_on_commit_callbacks(execute=True):
            shot.title = "inside"
            shot.save()
    # Once, and an update: not merged with the create queued before the block.
    assert [u.event for u in pushed] == ["update"]


@pytest.mark.django_db(transaction=True)
def test_fixture_in_a_transactional_test(pushy_updates, published):
    with transaction.atomic():
        shot = Shot.objects.create(title="a")
        shot.title = "b"
        shot.save()
    assert [(u.event, u.data) for u in pushy_updates] == [("create", {"title": "b"})]
    published.assert_nothing_more()


@pytest.mark.django_db(transaction=True)
def test_a_capture_read_inside_a_transaction_is_not_published_again(published):
    with capture_updates() as pushed, transaction.atomic():
        Shot.objects.create(title="a")
        assert [u.event for u in pushed] == ["create"]
    assert len(pushed) == 1
    published.assert_nothing_more()


class CaptureInTestCase(TestCase):
    """Django's TestCase: setUpTestData saves, and a transaction that never commits."""

    @classmethod
    def setUpTestData(cls):
        cls.shot = Shot.objects.create(title="setup")

    def test_capture_sees_the_save(self):
        with capture_updates() as pushed:
            self.shot.title = "renamed"
            self.shot.save()
        self.assertEqual(
            [(u.event, u.pk, u.data) for u in pushed],
            [("update", self.shot.pk, {"title": "renamed"})],
        )

    def test_create_and_delete_in_one_block_cancel_out(self):
        with capture_updates() as pushed:
            Shot.objects.create(title="brief").delete()
        self.assertEqual(pushed, [])


class CaptureInTransactionTestCase(TransactionTestCase):
    def test_capture_sees_each_commit(self):
        with capture_updates() as pushed:
            shot = Shot.objects.create(title="a")
            shot.delete()
        self.assertEqual([u.event for u in pushed], ["create", "delete"])
