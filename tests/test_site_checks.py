"""System checks for what would make the default authorization's answer not
the site's own (pushy.E014 to E016), with run_checks() and override_settings."""

import pytest
from django.conf import settings
from django.core.checks import run_checks
from django.test import override_settings

pytestmark = pytest.mark.timeout(30)

SITE = list(settings.MIDDLEWARE)
LOCMEM = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
REDIS_CACHE = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache"}}


def found(number):
    return [m for m in run_checks() if m.id == f"pushy.E{number:03d}"]


def test_the_test_sites_stack_is_clean():
    assert not found(14) and not found(15) and not found(16)


@override_settings(
    MIDDLEWARE=[*SITE, "tests.testapp.middleware.HomegrownSessionMiddleware"]
)
def test_a_session_middleware_that_is_not_djangos():
    (error,) = found(14)
    assert "HomegrownSessionMiddleware" in error.msg
    assert "SessionMiddleware" in error.hint and "AUTHORIZE" in error.hint


@override_settings(
    MIDDLEWARE=[*SITE, "tests.testapp.middleware.HomegrownSessionMiddleware"],
    PUSHY_SETTINGS={
        **settings.PUSHY_SETTINGS,
        "AUTHORIZE": "tests.testapp.auth.only_public",
    },
)
def test_no_check_for_a_rule_of_ones_own():
    assert not found(14)


@override_settings(
    MIDDLEWARE=[*SITE, "django.contrib.auth.middleware.RemoteUserMiddleware"]
)
def test_remote_user_middleware():
    (error,) = found(15)
    assert "REMOTE_USER" in error.msg and "AUTHORIZE" in error.hint


@override_settings(
    MIDDLEWARE=[*SITE, "django.contrib.auth.middleware.PersistentRemoteUserMiddleware"]
)
def test_persistent_remote_user_middleware_too():
    assert found(15)  # it logs in from REMOTE_USER too, when the header comes


@override_settings(
    SESSION_ENGINE="django.contrib.sessions.backends.cache", CACHES=LOCMEM
)
def test_sessions_in_a_cache_of_each_process():
    (error,) = found(16)
    assert "LocMemCache" in error.msg and "SESSION_CACHE_ALIAS" in error.hint


@pytest.mark.parametrize(
    "engine, caches",
    [
        ("django.contrib.sessions.backends.cache", REDIS_CACHE),
        ("django.contrib.sessions.backends.cached_db", LOCMEM),
        ("django.contrib.sessions.backends.db", LOCMEM),
    ],
)
def test_sessions_the_gateway_can_read(engine, caches):
    with override_settings(SESSION_ENGINE=engine, CACHES=caches):
        assert not found(16)
