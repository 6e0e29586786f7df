"""Each user sees through pushy exactly what the demo site's API shows them.

The demo site's orders are private: ``/api/v1/order/`` lists a user's own
orders (an empty list for anonymous visitors), and an order's URL answers its
owner only (404 for anyone else). With the gateway's default authorization,
alice (in Chromium, through pushy.js), bob and an anonymous client (real
WebSocket clients) subscribe to the list; orders change in another process,
and each must receive the updates of the orders its API shows it, and nothing
of the others, deletes included. Everything is real: runserver, runpushy,
Redis, the site's SQLite database, Chromium.
"""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from tests.browser.site import SampleSite
from tests.gateway.clients import Client
from tests.support.gateway import Gateway
from tests.support.servers import free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(120)]

ORDERS = "/api/v1/order/"
# Shots anyone may see: their updates end each phase, as markers.
MARKERS = {1: "/api/v1/shot/1/", 2: "/api/v1/shot/2/"}

SETUP = """
import json
from django.contrib.auth.models import User
from django.test import Client
from sample_site.photosession.models import Order

def cookie(user):
    browser = Client()
    browser.force_login(user)
    return browser.cookies["sessionid"].value

alice = User.objects.create_user("alice", password="x")
bob = User.objects.create_user("bob", password="x")
a1 = Order.objects.create(owner=alice, shot_id=1)
b1 = Order.objects.create(owner=bob, shot_id=2)
ids = {"alice": cookie(alice), "bob": cookie(bob), "a1": a1.pk, "b1": b1.pk}
print(json.dumps(ids))
"""

CHANGES = """
from django.contrib.auth.models import User
from sample_site.photosession.models import Order, Shot
Order.objects.filter(pk={a1}).update(copies=3)  # no signal: nobody hears of it
for pk, copies in [({a1}, 4), ({b1}, 5)]:
    order = Order.objects.get(pk=pk)
    order.copies = copies
    order.save()
print(Order.objects.create(owner=User.objects.get(username="alice"), shot_id=3).pk)
Shot.objects.get(pk=1).save()
"""

DELETES = """
from sample_site.photosession.models import Order, Shot
Order.objects.get(pk={b1}).delete()
Order.objects.get(pk={a2}).delete()
Shot.objects.get(pk=2).save()
"""


@pytest.fixture(scope="module")
def gateway_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def site(redis_server, gateway_port):
    running = SampleSite(redis_server.url, f"http://127.0.0.1:{gateway_port}/")
    try:
        yield running.start()
    finally:
        running.stop()


@pytest.fixture(scope="module")
def gateway(site, redis_server, gateway_port):
    """runpushy with the demo site's settings: the default authorization."""
    with Gateway(redis_server.url, port=gateway_port, env=site.env) as running:
        yield running


def last_line(output: str) -> str:
    return output.strip().splitlines()[-1]


def api_order_pks(site: SampleSite, cookie: str | None) -> set[int]:
    """What the site's API lists for this session (anonymous without one)."""
    request = urllib.request.Request(site.url + ORDERS.lstrip("/"))
    if cookie:
        request.add_header("Cookie", f"sessionid={cookie}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return {order["id"] for order in json.load(response)}


class BrowserUser:
    """The demo page in Chromium, subscribing through pushy.js; frames recorded."""

    def __init__(self, page, site: SampleSite, cookie: str) -> None:
        self.page = page
        self.frames: list[dict] = []
        page.context.add_cookies(
            [{"name": "sessionid", "value": cookie, "url": site.url}]
        )
        page.on("websocket", self._watch)
        page.goto(site.url)

    def _watch(self, socket) -> None:
        socket.on(
            "framereceived", lambda payload: self.frames.append(json.loads(payload))
        )

    def subscribe(self, *urls: str) -> None:
        self.page.evaluate(
            "urls => urls.forEach(url => pushy.subscribe(url, () => {}))", list(urls)
        )
        self.wait_for(
            lambda: (
                set(urls)
                <= {f["url"] for f in self.frames if f["type"] == "subscribed"}
            )
        )

    def wait_for(self, condition, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, self.frames
            self.page.wait_for_timeout(20)

    def updates_until(self, marker: str) -> list[dict]:
        """The updates received up to the marker's (which is left out)."""
        updates = []

        def marker_came():
            updates[:] = [f for f in self.frames if f["type"] == "update"]
            return any(f["url"] == marker for f in updates)

        self.wait_for(marker_came)
        self.frames.clear()
        end = next(i for i, f in enumerate(updates) if f["url"] == marker)
        return updates[:end]

    def api_order_pks(self) -> set[int]:
        """The API as this browser sees it, with its own cookie."""
        orders = self.page.evaluate(
            "url => fetch(url).then(r => r.json())", ORDERS
        )  # fmt: skip
        return {order["id"] for order in orders}


def socket_updates_until(client: Client, marker: str) -> list[dict]:
    updates = []
    while True:
        message = client.recv()
        assert message["type"] == "update", message
        if message["url"] == marker:
            return updates
        updates.append(message)


def seen(updates: list[dict]) -> list[tuple[str, int, dict | None]]:
    return [(u["event"], u["pk"], u.get("data")) for u in updates]


def test_each_user_receives_exactly_what_the_api_shows_them(site, gateway, page):
    ids = json.loads(last_line(site.shell(SETUP)))
    a1, b1 = ids["a1"], ids["b1"]
    alice = BrowserUser(page, site, ids["alice"])
    bob = Client(gateway.ws_url, cookie=f"sessionid={ids['bob']}")
    anonymous = Client(gateway.ws_url)
    try:
        alice.subscribe(ORDERS, *MARKERS.values())
        for client in (bob, anonymous):
            for url in (ORDERS, *MARKERS.values()):
                client.subscribe(url)  # the list: 200 for all (empty for anonymous)
        # An order's own URL: its owner only.
        bob.subscribe(f"{ORDERS}{b1}/")
        for client in (bob, anonymous):
            answer = client.request(action="subscribe", url=f"{ORDERS}{a1}/")
            assert answer["code"] == "forbidden", answer

        a2 = int(last_line(site.shell(CHANGES.format(a1=a1, b1=b1))))
        assert seen(alice.updates_until(MARKERS[1])) == [
            ("update", a1, {"shot": 1, "copies": 4}),
            ("create", a2, {"shot": 3, "copies": 1}),
        ]
        assert seen(socket_updates_until(bob, MARKERS[1])) == [
            ("update", b1, {"shot": 2, "copies": 5}),  # once, though subscribed twice
        ]
        assert socket_updates_until(anonymous, MARKERS[1]) == []
        # What each received is what the site's API lists for them.
        assert alice.api_order_pks() == {a1, a2} == api_order_pks(site, ids["alice"])
        assert api_order_pks(site, ids["bob"]) == {b1}
        assert api_order_pks(site, None) == set()

        site.shell(DELETES.format(b1=b1, a2=a2))
        assert seen(alice.updates_until(MARKERS[2])) == [
            ("delete", a2, {"shot": 3, "copies": 1})
        ]
        assert seen(socket_updates_until(bob, MARKERS[2])) == [
            ("delete", b1, {"shot": 2, "copies": 5})
        ]
        assert socket_updates_until(anonymous, MARKERS[2]) == []
        assert not [f for f in alice.frames if f["type"] == "error"]
    finally:
        bob.close()
        anonymous.close()
