"""Origins in a real runpushy: '*' in ALLOWED_HOSTS is never any origin."""

import pytest

from tests.gateway.clients import RawClient
from tests.support.gateway import Gateway

pytestmark = pytest.mark.timeout(60)


def status(gw: Gateway, origin: str | None) -> str:
    raw = RawClient("127.0.0.1", gw.port)
    try:
        return raw.upgrade(Origin=origin).split(" ", 2)[1]
    finally:
        raw.close()


def test_wildcard_allowed_hosts_does_not_let_a_foreign_page_in(pushy_redis):
    django = {"ALLOWED_HOSTS": ["*", ".example.org"]}
    pushy = {"SOCKET_SERVER": "https://push.example.com/pushy/"}
    with Gateway(pushy_redis.url, settings=django, pushy_settings=pushy) as gw:
        # runpushy runs the checks first: the dropped '*' is said, with a hint.
        assert "pushy.W001" in gw.startup_output
        assert "ALLOWED_ORIGINS" in gw.startup_output
        answers = {
            origin: status(gw, origin)
            for origin in [
                "https://evil.example",
                "http://localhost:8000",  # no DEBUG: not allowed
                "https://push.example.com",  # the host of SOCKET_SERVER
                "http://push.example.com:8443",  # any port
                "https://www.example.org",  # an explicit pattern is kept
                "file://push.example.com",
                "null",
                "chrome-extension://push.example.com",
                None,  # not a browser: authorization protects the data
            ]
        }
    assert answers == {
        "https://evil.example": "403",
        "http://localhost:8000": "403",
        "https://push.example.com": "101",
        "http://push.example.com:8443": "101",
        "https://www.example.org": "101",
        "file://push.example.com": "403",
        "null": "403",
        "chrome-extension://push.example.com": "403",
        None: "101",
    }


def test_explicit_wildcard_origin_still_means_any_http_origin(pushy_redis):
    with Gateway(pushy_redis.url, pushy_settings={"ALLOWED_ORIGINS": ["*"]}) as gw:
        assert "pushy.W002" in gw.startup_output
        assert status(gw, "https://anywhere.example") == "101"
        assert status(gw, "file://anywhere.example") == "403"
