"""Origin, session user and AUTHORIZE, with the user in the test database."""

import psutil
import pytest
from django.contrib.auth.models import User

from tests.gateway.clients import Client, RawClient, session_cookie
from tests.support.gateway import Gateway

pytestmark = [pytest.mark.timeout(60), pytest.mark.django_db(transaction=True)]

AUTHORIZE = {"AUTHORIZE": "tests.testapp.auth.only_staff", "DB_POOL_SIZE": 2}


@pytest.fixture(scope="module")
def authorizing_gateway(redis_server, django_db_setup):
    # django_db_setup first: the gateway must open the test database.
    with Gateway(redis_server.url, pushy_settings=AUTHORIZE) as gw:
        gw.threads_at_start = psutil.Process(gw.pid).num_threads()
        yield gw


def test_logged_in_staff_is_allowed_and_anonymous_is_forbidden(authorizing_gateway):
    staff = User.objects.create_user("staff", password="x", is_staff=True)
    allowed = Client(authorizing_gateway.ws_url, cookie=session_cookie(staff))
    anonymous = Client(authorizing_gateway.ws_url)
    try:
        allowed.subscribe("/api/shot/1/")
        answer = anonymous.request(action="subscribe", url="/api/shot/1/")
        assert answer["type"] == "error" and answer["code"] == "forbidden"
        assert answer["url"] == "/api/shot/1/"
        # Says what decided, and as whom: no cookie arrived. Page and gateway
        # share a host here, so no advice about host names.
        assert answer["message"] == (
            "not allowed: AUTHORIZE said no (anonymous: no session cookie came "
            "with the WebSocket)"
        )
        authorizing_gateway.wait_for_log(
            "refused a subscription to /api/shot/1/: not allowed: AUTHORIZE said no "
            "(anonymous: no session cookie"
        )
        # A refusal leaves the connection usable.
        assert anonymous.request(action="ping") == {"type": "pong"}
        assert authorizing_gateway.get_json("/stats")["subscriptions"] == 1
    finally:
        allowed.close()
        anonymous.close()


def test_logged_in_non_staff_is_refused(authorizing_gateway):
    user = User.objects.create_user("plain", password="x")
    client = Client(authorizing_gateway.ws_url, cookie=session_cookie(user))
    try:
        answer = client.request(action="subscribe", url="/api/shot/")
        assert answer["code"] == "forbidden"
        assert answer["message"] == "not allowed: AUTHORIZE said no (as plain)"
    finally:
        client.close()


def test_garbage_cookie_means_anonymous(authorizing_gateway):
    for cookie in ["sessionid=garbage", "sessionid=", "a=b; ;; =c", 'x="\\"']:
        client = Client(authorizing_gateway.ws_url, cookie=cookie)
        try:
            answer = client.request(action="subscribe", url="/api/shot/")
            assert answer["code"] == "forbidden", cookie
            if cookie == "sessionid=garbage":
                assert (
                    "the session cookie names no logged-in user" in (answer["message"])
                )
        finally:
            client.close()
    assert "Traceback" not in authorizing_gateway.output()


def test_db_work_stays_in_a_bounded_pool(authorizing_gateway):
    staff = User.objects.create_user("staff2", password="x", is_staff=True)
    clients = [
        Client(authorizing_gateway.ws_url, cookie=session_cookie(staff))
        for _ in range(6)
    ]
    try:
        for n, client in enumerate(clients):
            for k in range(5):
                client.send(action="subscribe", url=f"/api/shot/{n}-{k}/")
        for client in clients:
            for _ in range(5):
                assert client.recv()["type"] == "subscribed"
        # 30 concurrent checks ran on at most DB_POOL_SIZE new threads.
        threads = psutil.Process(authorizing_gateway.pid).num_threads()
        assert threads <= authorizing_gateway.threads_at_start + 2, threads
    finally:
        for client in clients:
            client.close()


def test_foreign_origin_is_refused_with_403(shared_gateway):
    raw = RawClient("127.0.0.1", shared_gateway.port)
    head = raw.upgrade(Origin="https://attacker.example")
    raw.close()
    assert head.startswith("HTTP/1.1 403 "), head
    # The operator is told why, with the origin and what is allowed.
    log = shared_gateway.wait_for_log("'https://attacker.example' is not allowed")
    line = next(x for x in log.splitlines() if "attacker.example" in x)
    assert "403" in line and "ALLOWED_ORIGINS" in line
    assert "'localhost'" in line  # the allowed list (tests.settings ALLOWED_HOSTS)


def test_malformed_upgrades_are_logged_with_the_reason(shared_gateway):
    raw = RawClient("127.0.0.1", shared_gateway.port)
    head = raw.upgrade(**{"Sec-WebSocket-Key": "short"})
    raw.close()
    assert head.startswith("HTTP/1.1 400 "), head
    shared_gateway.wait_for_log("with 400 Bad Request: bad Sec-WebSocket-Key")


def test_allowed_origins_setting_replaces_allowed_hosts(pushy_redis):
    origins = {"ALLOWED_ORIGINS": [".trusted.test"]}
    with Gateway(pushy_redis.url, pushy_settings=origins) as gw:
        for origin, status in [
            ("https://app.trusted.test:8443", "101"),
            ("http://localhost:8000", "403"),
        ]:
            raw = RawClient("127.0.0.1", gw.port)
            head = raw.upgrade(Origin=origin)
            raw.close()
            assert head.split(" ")[1] == status, (origin, head)


def test_debug_adds_localhost(pushy_redis):
    django = {"ALLOWED_HOSTS": ["example.com"], "DEBUG": True}
    with Gateway(pushy_redis.url, settings=django) as gw:
        raw = RawClient("127.0.0.1", gw.port)
        head = raw.upgrade(Origin="http://localhost:5173")
        raw.close()
        assert head.startswith("HTTP/1.1 101 "), head


def test_an_authorize_that_raises_refuses_and_is_logged(redis_server, django_db_setup):
    failing = {"AUTHORIZE": "tests.gateway.authorizers.explode"}
    with Gateway(redis_server.url, pushy_settings=failing) as gw:
        client = Client(gw.ws_url)
        try:
            answer = client.request(action="subscribe", url="/api/boom/")
            assert answer["code"] == "forbidden"
            client.subscribe("/api/fine/")
        finally:
            client.close()
        assert "AUTHORIZE failed for /api/boom/" in gw.wait_for_log("RuntimeError")
