"""The socket's user is the one the site sees: the Cookie header is read as
Django reads ``request.COOKIES`` (issue 21 item 5)."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import RequestFactory

from pushy.gateway.permissions import session_key
from tests.gateway.clients import Client
from tests.gateway.test_authorization import login
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
