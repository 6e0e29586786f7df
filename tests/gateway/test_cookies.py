"""The socket's user is the one the site sees: the Cookie header is read as
Django reads ``request.COOKIES`` (issue 21 item 5)."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import RequestFactory

from pushy.gateway.session_user import session_key
from tests.gateway.clients import Client, login
from tests.support.gateway import Gateway
from tests.testapp.models import Document

pytestmark = pytest.mark.timeout(60)

NAME = settings.SESSION_COOKIE_NAME

HEADERS = [
    f"consent=a b; {NAME}=abc123",  # a space in another cookie's value
    f'{NAME}=abc123; theme="dark',  # an unbalanced quote after it
    f"a=1; ; {NAME}=abc123",  # an empty item
    f"{NAME}=abc123; weird[]=x",  # a name SimpleCookie refuses
    f"tracking=x,y; {NAME}=abc123",
    f"{NAME}=first; {NAME}=abc123",  # repeated: the last one wins, as in Django
    f"=novalue; {NAME}=abc123",
    "consent=yes",  # no session at all
    "",
]


@pytest.mark.parametrize("header", HEADERS)
def test_the_session_key_is_the_one_django_reads(header):
    request = RequestFactory().get("/", HTTP_COOKIE=header)
    assert session_key(header) == (request.COOKIES.get(NAME) or None)


@pytest.mark.django_db(transaction=True)
def test_a_cookie_django_accepts_beside_the_session_keeps_the_user(redis_server):
    alice = User.objects.create_user("alice", password="x")
    doc = Document.objects.create(owner=alice, title="a")
    _, cookie = login(alice)
    with Gateway(redis_server.url) as gateway:
        client = Client(gateway.ws_url, cookie=f"consent=a b; {cookie}")
        try:
            answer = client.request(action="subscribe", url=doc.get_api_url())
            assert answer == {"type": "subscribed", "url": doc.get_api_url()}
        finally:
            client.close()


@pytest.mark.django_db(transaction=True)
def test_a_guest_order_in_one_visitors_session_is_shown_to_nobody_else(redis_server):
    """Anonymous visitors with a session are told apart: a decision for one
    (what its session holds) is never another's (issue 21 item 2)."""
    from importlib import import_module

    engine = import_module(settings.SESSION_ENGINE)
    guest = engine.SessionStore()
    guest["guest_orders"] = [7]
    guest.create()
    stranger = engine.SessionStore()
    stranger["guest_orders"] = []
    stranger.create()
    url = "/fn/guest-order/7/"
    with Gateway(redis_server.url) as gateway:
        clients = {
            "guest": Client(gateway.ws_url, cookie=f"{NAME}={guest.session_key}"),
            "no cookie": Client(gateway.ws_url),
            "stranger": Client(gateway.ws_url, cookie=f"{NAME}={stranger.session_key}"),
            "forged key": Client(gateway.ws_url, cookie=f"{NAME}={'x' * 32}"),
        }
        try:
            # The guest first: its "allowed" is cached before the others ask.
            answers = {
                name: client.request(action="subscribe", url=url)["type"]
                for name, client in clients.items()
            }
        finally:
            for client in clients.values():
                client.close()
    assert answers == {
        "guest": "subscribed",
        "no cookie": "error",
        "stranger": "error",
        "forged key": "error",
    }
