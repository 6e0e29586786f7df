"""Every refusal says what happened: what the site answered the GET (302 to
where, 403, 404), whether a session cookie came and whose, and the host-name
advice only where the page's host and the gateway's differ."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from tests.gateway.clients import Client, login
from tests.testapp.models import Document

pytestmark = [pytest.mark.timeout(60), pytest.mark.django_db(transaction=True)]


def refusal(client: Client, url: str) -> str:
    answer = client.request(action="subscribe", url=url)
    assert (answer["type"], answer["code"]) == ("error", "forbidden"), answer
    assert answer["url"] == url
    return answer["message"]


def test_the_views_answer_and_whose_session(gateway):
    alice = User.objects.create_user("alice", password="x")
    bob = User.objects.create_user("bob", password="x")
    doc = Document.objects.create(owner=alice, title="a")
    anonymous = Client(gateway.ws_url)
    as_bob = Client(gateway.ws_url, cookie=login(bob)[1])
    try:
        assert refusal(anonymous, "/fn/members/") == (
            "not allowed: GET answered 302 to /accounts/login/?next=/fn/members/ "
            "(anonymous: no session cookie came with the WebSocket)"
        )
        assert refusal(as_bob, doc.get_api_url()) == (
            "not allowed: GET answered 403 (as bob)"
        )
        missing = refusal(as_bob, "/fn/not-found/")
        assert missing == "not allowed: GET answered 404 (as bob)"
        # The gateway's log says the same (its first refusal; then at a
        # bounded rate).
        gateway.wait_for_log(
            "refused a subscription to /fn/members/: not allowed: GET answered 302 "
            "to /accounts/login/?next=/fn/members/ (anonymous"
        )
    finally:
        anonymous.close()
        as_bob.close()


def test_host_name_advice_only_when_page_and_gateway_hosts_differ(gateway):
    # The page on localhost, the socket sent to 127.0.0.1: the browser keeps
    # the page's cookies for localhost.
    page = f"http://localhost:{gateway.port}"
    elsewhere = Client(gateway.ws_url, origin=page)
    try:
        message = refusal(elsewhere, "/fn/members/")
        assert "the page is on localhost" in message
        assert "the gateway on 127.0.0.1" in message
    finally:
        elsewhere.close()
