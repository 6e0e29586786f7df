"""pushy.testing: capturing updates instead of sending them."""

import pytest
from django.db import transaction

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
