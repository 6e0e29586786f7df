"""pushy.authorization.can_get on real views, users, permissions and sessions."""

import pytest
from django.contrib.auth.models import AnonymousUser, Permission, User
from django.test import Client as DjangoClient
from django.test import override_settings

from pushy.authorization import allow_all, can_get, get_answer, get_request
from pushy.explain import describe
from tests.testapp.models import Document

pytestmark = [pytest.mark.timeout(30), pytest.mark.django_db]


@pytest.fixture
def alice():
    return User.objects.create_user("alice", password="x")


@pytest.fixture
def bob():
    return User.objects.create_user("bob", password="x")


@pytest.fixture
def viewer():
    user = User.objects.create_user("viewer", password="x")
    user.user_permissions.add(Permission.objects.get(codename="view_shot"))
    return User.objects.get(pk=user.pk)  # a fresh object: no permission cache


ANONYMOUS = AnonymousUser()


def test_unresolvable_urls_are_refused(alice):
    for url in ["/nowhere/", "/api/shot/x/", "", "/api/shot/1/extra/"]:
        assert not can_get(alice, url), url


def test_a_plain_view_answering_200_allows_everyone(alice):
    assert can_get(ANONYMOUS, "/api/shot/1/")
    assert can_get(alice, "/api/shot/")
    assert can_get(ANONYMOUS, "/api/shot/?page=2")  # the query string is kept


def test_absolute_urls_are_judged_by_their_path():
    assert can_get(ANONYMOUS, "http://localhost:8000/api/shot/1/")
    assert not can_get(ANONYMOUS, "http://localhost:8000/nowhere/")


@pytest.mark.parametrize("url", ["/fn/members/", "/cbv/members/"])
def test_login_required(url, alice):
    assert not can_get(ANONYMOUS, url)  # redirected to the login page
    assert can_get(alice, url)


@pytest.mark.parametrize("url", ["/fn/shot-viewers/", "/cbv/shot-viewers/"])
def test_permission_required(url, alice, viewer):
    assert not can_get(ANONYMOUS, url)
    assert not can_get(alice, url)  # 302 (function view) or 403 (mixin)
    assert can_get(viewer, url)


def test_404_redirect_and_errors_refuse(alice, caplog):
    assert not can_get(alice, "/fn/not-found/")
    assert not can_get(alice, "/fn/moved/")
    assert not can_get(alice, "/fn/broken/")
    assert "the view of /fn/broken/ failed" in caplog.text


def test_a_template_response_is_rendered_as_the_site_renders_it(alice):
    # Its template does not exist: the site answers 500, so the answer is no.
    browser = DjangoClient(raise_request_exception=False)
    browser.force_login(alice)
    assert browser.get("/cbv/unrendered/").status_code == 500
    assert not can_get(alice, "/cbv/unrendered/")


def test_the_view_gets_a_session():
    assert can_get(ANONYMOUS, "/fn/session/")


def test_drf_permission_classes_and_object_permissions(alice, bob):
    doc = Document.objects.create(owner=alice, title="a")
    url = doc.get_api_url()
    assert can_get(alice, url)
    assert not can_get(bob, url)  # object permission: 403
    assert not can_get(ANONYMOUS, url)  # IsAuthenticated: 403
    assert can_get(alice, "/api/doc/")
    assert not can_get(ANONYMOUS, "/api/doc/")
    assert can_get(ANONYMOUS, "/api/public-doc/")


def test_drf_filtered_queryset(alice, bob):
    doc = Document.objects.create(owner=alice, title="a")
    assert can_get(alice, f"/api/own-doc/{doc.pk}/")
    assert not can_get(bob, f"/api/own-doc/{doc.pk}/")  # 404
    assert not can_get(ANONYMOUS, f"/api/own-doc/{doc.pk}/")


SITE_MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]


@override_settings(MIDDLEWARE=SITE_MIDDLEWARE)
def test_answers_match_the_site_served_through_its_middleware(alice, bob):
    # DRF's SessionAuthentication reads request._request.user: the user we set.
    mine = Document.objects.create(owner=alice, title="a").get_api_url()
    theirs = Document.objects.create(owner=bob, title="b").get_api_url()
    browser = DjangoClient()
    browser.force_login(alice)
    urls = [mine, theirs, "/api/doc/", "/fn/members/", "/cbv/shot-viewers/"]
    for url in urls:
        site_says = 200 <= browser.get(url).status_code < 300
        assert can_get(alice, url) is site_says, url
    assert [can_get(alice, url) for url in urls] == [True, False, True, True, False]
    request = get_request(mine, "", alice, None)
    assert request.get_host() == "localhost"


def test_inactive_users_are_anonymous_to_drf(alice):
    doc = Document.objects.create(owner=alice, title="a")
    alice.is_active = False
    alice.save()  # the site loads the user from the database
    assert not can_get(alice, doc.get_api_url())


@override_settings(ALLOWED_HOSTS=["*"])
def test_any_allowed_hosts_shape_gives_a_valid_host():
    assert can_get(ANONYMOUS, "/api/shot/1/")


@override_settings(ALLOWED_HOSTS=[".example.org"])
def test_a_subdomain_pattern_gives_a_valid_host():
    request = get_request("/api/shot/1/", "", ANONYMOUS, None)
    assert request.get_host() == "example.org"
    assert can_get(ANONYMOUS, "/api/shot/1/")


@override_settings(FORCE_SCRIPT_NAME="/site")
def test_a_script_prefix_is_taken_off():
    assert can_get(ANONYMOUS, "/site/api/shot/1/")
    assert not can_get(ANONYMOUS, "/api/shot/1/")
    # Said in the same words by a refusal and by pushy_explain.
    outside = get_answer(ANONYMOUS, "/api/shot/1/")
    assert outside.said() == "is outside FORCE_SCRIPT_NAME"
    assert describe(outside, "/api/shot/1/") == (
        "/api/shot/1/ is outside FORCE_SCRIPT_NAME"
    )


def test_allow_all_allows_anything():
    assert allow_all(ANONYMOUS, "/nowhere/")


def test_non_ascii_and_percent_encoded_paths_resolve_as_a_request_would():
    assert can_get(ANONYMOUS, "/api/tag/☃/")
    assert can_get(ANONYMOUS, "/api/tag/%E2%98%83/")
    assert can_get(ANONYMOUS, "/api/shot/?q=☃")
