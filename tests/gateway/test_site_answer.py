"""Exactly what the site would show (issue 21 items 1, 2), through a real gateway.

Each test starts ``runpushy`` with the site's settings of its row: the
project's middleware (``LoginRequiredMiddleware``, a staff-only middleware),
a guest order granted by the ids in the visitor's session, a view restricted
by client address (clients connect from 127.0.0.2 and 127.0.0.3 by binding
their socket's source address; 127.0.0.3 is a trusted proxy), a tenant chosen
by the page's host, and a GET view with side effects that must leave none.
"""

from __future__ import annotations

import itertools
import socket
from importlib import import_module

import django
import pytest
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.models import User
from django.contrib.messages.storage.session import SessionStorage
from django.http import HttpResponse
from django.test import RequestFactory

from pushy.messages import Update
from tests.gateway.clients import Client, login, publish
from tests.gateway.test_authorization import is_marker, publish_marker
from tests.support.gateway import Gateway
from tests.testapp.models import Shot, Unpushed

pytestmark = [pytest.mark.timeout(60), pytest.mark.django_db(transaction=True)]

NAME = settings.SESSION_COOKIE_NAME
SITE = list(settings.MIDDLEWARE)
FORBIDDEN = "error"
_numbers = itertools.count(1)


def connect(gateway: Gateway, source: str = "127.0.0.1", **options) -> Client:
    """A WebSocket client whose socket comes from the address ``source``."""
    sock = socket.create_connection(
        (gateway.host, gateway.port), timeout=5, source_address=(source, 0)
    )
    return Client(gateway.ws_url, socket=sock, **options)


def answer(client: Client, url: str) -> str:
    """'subscribed' or 'error' (forbidden), for a subscribe to ``url``."""
    reply = client.request(action="subscribe", url=url)
    assert reply["type"] == "subscribed" or reply["code"] == "forbidden", reply
    return reply["type"]


def stored_session(**data) -> str:
    engine = import_module(settings.SESSION_ENGINE)
    session = engine.SessionStore()
    session.update(data)
    session.create()
    return session.session_key


def update(url: str) -> Update:
    n = next(_numbers)
    return Update(url=url, event="update", model="testapp.shot", pk=n, data={"n": n})


@pytest.fixture
def clients():
    opened: list[Client] = []
    yield opened
    for client in opened:
        client.close()


@pytest.mark.skipif(django.VERSION < (5, 1), reason="LoginRequiredMiddleware: 5.1+")
def test_login_required_middleware_keeps_anonymous_sockets_out(redis_server, clients):
    alice = User.objects.create_user("alice", password="x")
    _, cookie = login(alice)
    middleware = [*SITE, "django.contrib.auth.middleware.LoginRequiredMiddleware"]
    with Gateway(redis_server.url, settings={"MIDDLEWARE": middleware}) as gateway:
        anonymous = Client(gateway.ws_url)
        member = Client(gateway.ws_url, cookie=cookie)
        clients += [anonymous, member]
        # /api/shot/1/ has no decorator: only the middleware sends visitors away.
        assert answer(anonymous, "/api/shot/1/") == FORBIDDEN
        assert answer(member, "/api/shot/1/") == "subscribed"


def test_a_staff_only_middleware_keeps_other_users_out(redis_server, clients):
    alice = User.objects.create_user("alice", password="x")
    staff = User.objects.create_user("staff", password="x", is_staff=True)
    middleware = [*SITE, "tests.testapp.middleware.StaffOnlyMiddleware"]
    with Gateway(redis_server.url, settings={"MIDDLEWARE": middleware}) as gateway:
        user = Client(gateway.ws_url, cookie=login(alice)[1])
        admin = Client(gateway.ws_url, cookie=login(staff)[1])
        clients += [user, admin]
        assert answer(user, "/staff/report/") == FORBIDDEN
        assert answer(admin, "/staff/report/") == "subscribed"
        assert answer(user, "/api/shot/1/") == "subscribed"  # outside the prefix


def test_a_guest_order_is_never_shared_with_other_anonymous_visitors(
    redis_server, clients
):
    guest = stored_session(guest_orders=[7])
    other = stored_session(guest_orders=[8])
    url = "/fn/guest-order/7/"
    with Gateway(redis_server.url) as gateway:
        victim = Client(gateway.ws_url, cookie=f"{NAME}={guest}")
        clients.append(victim)
        assert answer(victim, url) == "subscribed"
        # Right after: the victim's "allowed" is cached, from the same address.
        attacker = Client(gateway.ws_url)
        second = Client(gateway.ws_url, cookie=f"{NAME}={other}")
        clients += [attacker, second]
        assert answer(attacker, url) == FORBIDDEN
        assert answer(second, url) == FORBIDDEN
        publish(redis_server.url, update(url))
        assert victim.recv()["url"] == url  # the victim's updates still flow


def test_the_background_refresh_asks_as_the_same_visitor(redis_server, clients):
    """Answers in use are asked again before they expire: as the visitor they
    are cached for (its session, its address), never another one."""
    guest = stored_session(guest_orders=[7])
    ttl = 1.0
    gateway_settings = {"AUTHORIZATION_TTL": ttl, "DB_POOL_SIZE": 2}
    with Gateway(redis_server.url, pushy_settings=gateway_settings) as gateway:
        office = connect(gateway, "127.0.0.2")
        shopper = Client(gateway.ws_url, cookie=f"{NAME}={guest}")
        clients += [office, shopper]
        assert answer(office, "/fn/office/") == "subscribed"
        assert answer(shopper, "/fn/guest-order/7/") == "subscribed"
        # Other anonymous visitors, from elsewhere, read after them.
        stranger = Client(gateway.ws_url, cookie=f"{NAME}={stored_session()}")
        clients.append(stranger)
        assert answer(stranger, "/fn/office/") == FORBIDDEN
        asked = gateway.get_json("stats")["authorizations"]
        # Updates keep coming until both answers were asked again (each in the
        # last quarter of its life); every one reaches its subscriber.
        while gateway.get_json("stats")["authorizations"] < asked + 2:
            for client, url in (
                (office, "/fn/office/"),
                (shopper, "/fn/guest-order/7/"),
            ):
                publish(redis_server.url, update(url))
                message = client.recv()
                assert message["type"] == "update" and message["url"] == url, message


def test_an_address_restricted_view_sees_the_clients_real_address(
    redis_server, clients
):
    alice = User.objects.create_user("alice", password="x")
    _, cookie = login(alice)
    url = "/fn/office/"
    proxy = {"TRUSTED_PROXIES": ["127.0.0.3"], "DB_POOL_SIZE": 2}
    with Gateway(redis_server.url, pushy_settings=proxy) as gateway:

        def from_(source, forwarded=None, **options):
            header = [f"X-Forwarded-For: {forwarded}"] if forwarded else []
            client = connect(gateway, source, header=header, **options)
            clients.append(client)
            return answer(client, url)

        assert from_("127.0.0.2") == "subscribed"
        assert from_("127.0.0.1") == FORBIDDEN
        assert from_("127.0.0.3", forwarded="127.0.0.2") == "subscribed"  # a proxy's
        assert from_("127.0.0.3", forwarded="10.0.0.9") == FORBIDDEN
        assert from_("127.0.0.1", forwarded="127.0.0.2") == FORBIDDEN  # not a proxy
        # One user, two addresses: two answers (decisions are per address).
        assert from_("127.0.0.2", cookie=cookie) == "subscribed"
        assert from_("127.0.0.1", cookie=cookie) == FORBIDDEN


def test_the_host_is_the_pages_from_the_origin(redis_server, clients):
    hosts = {"ALLOWED_HOSTS": [".example.com", "127.0.0.1", "localhost"]}
    with Gateway(redis_server.url, settings=hosts) as gateway:

        def on(**options):
            client = Client(gateway.ws_url, **options)
            clients.append(client)
            return answer(client, "/fn/shop/")

        assert on(origin="http://shop.example.com") == "subscribed"
        assert on(origin="https://shop.example.com") == "subscribed"
        # Same address, no cookie, another page: not the shop's answer.
        assert on(origin="http://blog.example.com") == FORBIDDEN
        assert on(suppress_origin=True) == FORBIDDEN  # Host: 127.0.0.1:port
        assert on(suppress_origin=True, host="shop.example.com") == "subscribed"


def test_a_get_with_side_effects_leaves_none(redis_server, clients):
    key = stored_session(visits=1)
    engine = import_module(settings.SESSION_ENGINE)
    session = engine.SessionStore(key)
    request = RequestFactory().get("/")
    request.session = session
    storage = SessionStorage(request)
    storage.add(messages.INFO, "your order shipped")
    storage.update(HttpResponse())
    session.save()
    site = {"MESSAGE_STORAGE": "django.contrib.messages.storage.session.SessionStorage"}
    with Gateway(redis_server.url, settings=site) as gateway:
        watcher = Client(gateway.ws_url)
        visitor = Client(gateway.ws_url, cookie=f"{NAME}={key}")
        clients += [watcher, visitor]
        watcher.subscribe("/api/shot/")
        assert answer(visitor, "/fn/side-effects/") == "subscribed"
        n = publish_marker(redis_server.url)
        # The Shot the GET saved was never published: the marker comes first.
        assert is_marker(watcher.recv(), n)
    assert not Unpushed.objects.exists() and not Shot.objects.exists()
    again = engine.SessionStore(key)
    assert again["visits"] == 1
    request.session = again
    assert [str(m) for m in SessionStorage(request)] == ["your order shipped"]
