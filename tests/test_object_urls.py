"""Which URL stands for an object and for its collection (pushy/object_urls.py)."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from pushy.exceptions import InvalidUpdate
from pushy.object_urls import model_collection_url, object_url
from pushy.testing import capture_updates
from tests.testapp.models import Note, NoUrl, Product, Session, Shot

pytestmark = [pytest.mark.timeout(30), pytest.mark.django_db]


def test_get_absolute_url_serves_a_model_without_get_api_url():
    assert object_url(Product(pk=7)) == "/products/7/"


def test_get_api_url_wins_over_get_absolute_url(monkeypatch):
    monkeypatch.setattr(Shot, "get_absolute_url", lambda self: "/shots/x/", False)
    assert object_url(Shot(pk=3)) == "/api/shot/3/"


def test_a_model_with_neither_is_named():
    with pytest.raises(InvalidUpdate, match="testapp.nourl has neither get_api_url"):
        object_url(NoUrl(pk=1))


def test_a_product_save_is_published_at_its_absolute_url():
    models = [*settings.PUSHY_SETTINGS["MODELS"], "testapp.product"]
    pushy = {**settings.PUSHY_SETTINGS, "MODELS": models}
    with override_settings(PUSHY_SETTINGS=pushy), capture_updates() as captured:
        product = Product.objects.create(name="kettle")
    [update] = captured
    assert (update.url, update.collection) == (
        f"/products/{product.pk}/",
        "/products/",
    )


def test_an_empty_list_of_a_model_is_its_collection_found_from_a_sample():
    assert model_collection_url(Product.objects.none()) == "/products/"
    assert model_collection_url(Product) == "/products/"


def test_a_list_with_members_asks_the_first_one_in_one_query():
    Session.objects.create(name="a")
    with CaptureQueriesContext(connection) as queries:
        assert model_collection_url(Session.objects.all()) == "/api/session/"
    assert len(queries) == 1


def test_an_evaluated_list_is_not_queried_again():
    Session.objects.create(name="a")
    sessions = Session.objects.all()
    list(sessions)
    with CaptureQueriesContext(connection) as queries:
        assert model_collection_url(sessions) == "/api/session/"
    assert len(queries) == 0


def test_get_api_list_url_names_the_collection_of_an_empty_list():
    assert model_collection_url(Shot.objects.none()) == "/api/shot/"


def test_an_empty_list_whose_urls_need_more_than_the_pk_says_what_to_add():
    # Note's URL is its slug: a sample with pk=1 gives /api/note/1/, which
    # resolves; a model whose URL cannot be built from a bare instance cannot.
    assert model_collection_url(Note) == "/api/note/"
    with pytest.raises(ValueError, match="add a get_api_list_url"):
        model_collection_url(NoUrl)
