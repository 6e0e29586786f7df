"""``manage.py check --deploy``: pushy's production warnings (pushy.W1xx)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.checks import run_checks
from django.test import override_settings

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parent.parent

# A production-like site: https, a password on a remote Redis, the gateway
# behind the site's proxy under its own host.
GOOD = {
    "MODELS": ["testapp.shot"],
    "SOCKET_SERVER": "https://example.com/pushy/",
    "REDIS_URL": "rediss://:secret@redis.internal:6380/0",
    "TRUSTED_PROXIES": ["127.0.0.1"],
}
SITE = {
    "ALLOWED_HOSTS": ["example.com"],
    "SECURE_SSL_REDIRECT": True,
    "SESSION_COOKIE_SECURE": True,
}


def deploy_ids(pushy: dict | None = None, **django) -> set[str]:
    site = {**SITE, **django}
    with override_settings(PUSHY_SETTINGS={**GOOD, **(pushy or {})}, **site):
        messages = run_checks(include_deployment_checks=True)
    return {m.id for m in messages if m.id.startswith("pushy.W1")}


def test_a_production_site_set_up_well_gets_none():
    assert deploy_ids() == set()


def test_they_run_only_with_deploy():
    pushy = {**GOOD, "DEBUG": True}
    with override_settings(PUSHY_SETTINGS=pushy, **SITE):
        assert not [m for m in run_checks() if m.id.startswith("pushy.W1")]


def test_the_client_logging_to_every_console():
    assert deploy_ids({"DEBUG": True}) == {"pushy.W101"}


def test_http_socket_server_on_an_https_site():
    ids = deploy_ids({"SOCKET_SERVER": "http://example.com:8001/"})
    assert ids == {"pushy.W102"}
    # An http site may use an http gateway.
    assert "pushy.W102" not in deploy_ids(
        {"SOCKET_SERVER": "http://example.com:8001/"},
        SECURE_SSL_REDIRECT=False,
        SESSION_COOKIE_SECURE=False,
    )


def test_allow_all():
    assert deploy_ids({"AUTHORIZE": "pushy.authorization.allow_all"}) == {"pushy.W103"}


@pytest.mark.parametrize(
    "url, warned",
    [
        ("redis://redis.internal:6379/0", True),
        ("redis://:secret@redis.internal:6379/0", False),
        ("rediss://redis.internal:6380/0", False),
        ("redis://127.0.0.1:6379/0", False),
        ("redis://localhost:6379/0", False),
        ("unix:///run/redis.sock", False),
        ("redis+sentinel://s1.internal:26379,s2.internal:26379/mymaster/0", True),
        ("redis+sentinel://:pw@s1.internal:26379/mymaster/0", False),
    ],
)
def test_redis_with_no_password_nor_tls_off_the_host(url, warned):
    assert ("pushy.W104" in deploy_ids({"REDIS_URL": url})) is warned


def test_a_proxy_without_trusted_proxies():
    assert deploy_ids({"TRUSTED_PROXIES": []}) == {"pushy.W105"}
    # No per-client limit: nothing it would get wrong.
    ids = deploy_ids({"TRUSTED_PROXIES": [], "MAX_CONNECTIONS_PER_CLIENT": None})
    assert ids == set()


def test_a_gateway_host_the_session_cookie_does_not_reach():
    sub = {"SOCKET_SERVER": "https://ws.example.com/"}
    assert deploy_ids(sub) == {"pushy.W106"}
    assert deploy_ids(sub, SESSION_COOKIE_DOMAIN=".example.com") == set()
    assert deploy_ids(sub, ALLOWED_HOSTS=[".example.com"]) == set()


def test_the_ids_are_documented():
    text = (ROOT / "docs" / "settings.md").read_text()
    for number in range(101, 107):
        assert f"`pushy.W{number}`" in text
