"""The default authorization's GET is the site's own (issue 21 item 1):
the project's middleware runs, the visitor's session, address and Host count,
and nothing the GET does is kept. In process, on real views and middleware;
tests/gateway/test_site_answer.py runs the same rows through a real gateway."""

from importlib import import_module

import django
import pytest
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.models import AnonymousUser, User
from django.contrib.messages.storage.session import SessionStorage
from django.core.cache import caches
from django.http import HttpResponse
from django.test import RequestFactory, override_settings

from pushy.authorization import can_get, get_answer
from pushy.testing import capture_updates
from tests.testapp.models import Shot, Unpushed

pytestmark = [pytest.mark.timeout(30), pytest.mark.django_db]

ANONYMOUS = AnonymousUser()
SITE = list(settings.MIDDLEWARE)


def stored_session(**data):
    """A session saved in the database, loaded again as the gateway loads it."""
    engine = import_module(settings.SESSION_ENGINE)
    session = engine.SessionStore()
    session.update(data)
    session.create()
    loaded = engine.SessionStore(session.session_key)
    loaded.load()
    loaded._session  # noqa: B018 -- read, as the gateway's get_user reads it
    return loaded


@pytest.fixture
def alice():
    return User.objects.create_user("alice", password="x")


@pytest.mark.skipif(django.VERSION < (5, 1), reason="LoginRequiredMiddleware: 5.1+")
@override_settings(
    MIDDLEWARE=[*SITE, "django.contrib.auth.middleware.LoginRequiredMiddleware"]
)
def test_login_required_middleware_refuses_anonymous_visitors(alice):
    # The view has no decorator: only the middleware keeps visitors out.
    assert not can_get(ANONYMOUS, "/api/shot/1/")
    assert can_get(alice, "/api/shot/1/")


@override_settings(MIDDLEWARE=[*SITE, "tests.testapp.middleware.StaffOnlyMiddleware"])
def test_a_staff_only_middleware_refuses_other_users(alice):
    staff = User.objects.create_user("staff", password="x", is_staff=True)
    assert not can_get(alice, "/staff/report/")
    assert not can_get(ANONYMOUS, "/staff/report/")
    assert can_get(staff, "/staff/report/")
    assert can_get(alice, "/api/shot/1/")  # outside its prefix


def test_a_guest_order_is_the_session_holders_only():
    guest = stored_session(guest_orders=[7])
    stranger = stored_session(guest_orders=[8])
    assert can_get(ANONYMOUS, "/fn/guest-order/7/", guest)
    assert not can_get(ANONYMOUS, "/fn/guest-order/7/", stranger)
    assert not can_get(ANONYMOUS, "/fn/guest-order/7/")


def test_the_session_decides_the_user(alice):
    # A logged-in session, as the site's SessionMiddleware and
    # AuthenticationMiddleware read it; the user argument does not override it.
    from django.test import Client

    browser = Client()
    browser.force_login(alice)
    session = import_module(settings.SESSION_ENGINE).SessionStore(
        browser.cookies[settings.SESSION_COOKIE_NAME].value
    )
    session.load()
    assert can_get(ANONYMOUS, "/fn/members/", session)
    assert not can_get(alice, "/fn/members/", stored_session())


def test_the_address_is_the_visitors():
    assert can_get(ANONYMOUS, "/fn/office/", environ={"REMOTE_ADDR": "127.0.0.2"})
    assert not can_get(ANONYMOUS, "/fn/office/", environ={"REMOTE_ADDR": "10.1.1.1"})
    assert not can_get(ANONYMOUS, "/fn/office/")  # no visitor: 127.0.0.1


@override_settings(ALLOWED_HOSTS=[".example.com", "localhost"])
def test_the_host_is_the_visitors():
    shop = {"HTTP_HOST": "shop.example.com", "SERVER_NAME": "shop.example.com"}
    other = {"HTTP_HOST": "blog.example.com", "SERVER_NAME": "blog.example.com"}
    assert can_get(ANONYMOUS, "/fn/shop/", environ=shop)
    assert not can_get(ANONYMOUS, "/fn/shop/", environ=other)


@override_settings(
    MESSAGE_STORAGE="django.contrib.messages.storage.session.SessionStorage"
)
def test_nothing_the_get_does_is_kept(django_capture_on_commit_callbacks):
    session = stored_session(visits=1)
    request = RequestFactory().get("/")
    request.session = session
    storage = SessionStorage(request)
    storage.add(messages.INFO, "your order shipped")
    storage.update(HttpResponse())
    session.save()
    with capture_updates() as published:
        with django_capture_on_commit_callbacks(execute=True):
            answer = get_answer(ANONYMOUS, "/fn/side-effects/", session)
    assert answer.status == 200 and answer.error is None
    assert list(published) == []  # the Shot's publish was rolled back with it
    assert not Unpushed.objects.exists() and not Shot.objects.exists()
    again = import_module(settings.SESSION_ENGINE).SessionStore(session.session_key)
    assert again["visits"] == 1  # not saved
    request.session = again
    assert [str(m) for m in SessionStorage(request)] == ["your order shipped"]


@override_settings(
    MIDDLEWARE=[
        "django.middleware.cache.UpdateCacheMiddleware",
        *SITE,
        "django.middleware.cache.FetchFromCacheMiddleware",
    ],
    CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
    CACHE_MIDDLEWARE_SECONDS=60,
)
def test_the_cache_middleware_is_left_out():
    caches["default"].clear()
    assert can_get(ANONYMOUS, "/api/shot/1/")
    assert can_get(ANONYMOUS, "/api/shot/1/")
    assert caches["default"]._cache == {}  # nothing stored, nothing served from it


def test_refusals_are_not_logged_as_site_errors(alice, caplog):
    assert not can_get(ANONYMOUS, "/fn/office/")  # PermissionDenied: 403
    assert not can_get(ANONYMOUS, "/fn/not-found/")
    assert not [r for r in caplog.records if r.name.startswith("django.request")]
