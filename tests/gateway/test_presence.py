"""Presence across two real gateways sharing one real Redis (docs/protocol.md,
"Presence"): who joins a URL, who is told, and who leaves when a gateway dies.

Users and sessions live in the test database the gateways read. "Never told"
is shown with a ping: a client's messages arrive in order, so when the pong
is the next message, nothing came before it.
"""

from __future__ import annotations

import signal
import time

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client as DjangoClient

from pushy.messages import Update
from tests.gateway.clients import Client, publish
from tests.support.gateway import Gateway
from tests.testapp.models import Document

pytestmark = [pytest.mark.timeout(60), pytest.mark.django_db(transaction=True)]

# Anyone may GET it (tests/testapp/views.py: detail).
OPEN_URL = "/api/shot/1/"
HEARTBEAT = 0.5


def login(user: User) -> str:
    """A session cookie header for ``user``."""
    return logged_in(user)[1]


def logged_in(user: User) -> tuple[DjangoClient, str]:
    """A logged-in browser (to log out later) and its session cookie header."""
    browser = DjangoClient()
    browser.force_login(user)
    name = settings.SESSION_COOKIE_NAME
    return browser, f"{name}={browser.cookies[name].value}"


@pytest.fixture
def gateways(redis_server, django_db_setup):
    """Two gateways on one Redis, with a short presence heartbeat."""
    options = {"DB_POOL_SIZE": 2, "PRESENCE_HEARTBEAT": HEARTBEAT}
    with Gateway(redis_server.url, pushy_settings=options) as one:
        with Gateway(redis_server.url, pushy_settings=options) as two:
            yield one, two


@pytest.fixture
def people():
    return (
        User.objects.create_user("alice", password="x"),
        User.objects.create_user("bob", password="x"),
    )


@pytest.fixture
def clients():
    """Clients opened by the test, closed after it."""
    opened: list[Client] = []

    def connect(gateway: Gateway, user: User | None = None) -> Client:
        options = {} if user is None else {"cookie": login(user)}
        client = Client(gateway.ws_url, timeout=10, **options)
        opened.append(client)
        return client

    yield connect
    for client in opened:
        client.close()


def join(client: Client, url: str = OPEN_URL) -> tuple[str, dict]:
    """Join ``url``: the person id the gateway gave, and the first list."""
    assert client.request(action="join", url=url) == {"type": "subscribed", "url": url}
    joined = client.recv()
    assert joined["type"] == "joined" and joined["url"] == url, joined
    return joined["you"], presence_where(client, lambda m: True)


def presence_where(client: Client, predicate, timeout: float = 10) -> dict:
    """The first presence message for which ``predicate`` holds."""
    return client.recv_until(
        lambda m: m["type"] == "presence" and predicate(m), timeout=timeout
    )


def names(message: dict) -> list[str]:
    return [person["name"] for person in message["people"]]


def assert_nothing_before_pong(client: Client) -> None:
    client.send(action="ping")
    assert client.recv() == {"type": "pong"}


def test_people_on_two_gateways_see_each_other_join_and_leave(
    gateways, people, clients
):
    one, two = gateways
    alice_user, bob_user = people
    alice = clients(one, alice_user)
    alice_id, first = join(alice)
    assert first["count"] == 1 and names(first) == ["alice"]
    assert first["people"][0]["id"] == alice_id
    assert first["anonymous"] == 0

    bob = clients(two, bob_user)
    bob_id, seen_by_bob = join(bob)
    assert bob_id != alice_id
    # Alice's entry was written before she was sent her list: bob's first has her.
    assert seen_by_bob["count"] == 2
    assert names(seen_by_bob) == ["alice", "bob"]  # earliest first
    seen_by_alice = presence_where(alice, lambda m: m["count"] == 2)
    assert names(seen_by_alice) == ["alice", "bob"]
    assert [p["since"] for p in seen_by_alice["people"]] == [
        p["since"] for p in seen_by_bob["people"]
    ]

    assert bob.request(action="leave", url=OPEN_URL) == {
        "type": "left",
        "url": OPEN_URL,
    }
    assert names(presence_where(alice, lambda m: m["count"] == 1)) == ["alice"]
    # Bob left presence, not the subscription, and hears no more lists.
    assert_nothing_before_pong(bob)


def test_a_closed_connection_leaves(gateways, people, clients):
    one, two = gateways
    alice = clients(one, people[0])
    join(alice)
    bob = clients(two, people[1])
    join(bob)
    presence_where(alice, lambda m: m["count"] == 2)
    stats = two.get_json("/stats")
    assert (stats["presence_urls"], stats["presence_members"]) == (1, 1)
    bob.close()
    assert names(presence_where(alice, lambda m: m["count"] == 1)) == ["alice"]
    # Bob's gateway sent his leave: it holds no presence any more.
    stats = two.get_json("/stats")
    assert (stats["presence_urls"], stats["presence_members"]) == (0, 0)
    assert "pushy_gateway_presence_members 1" in one.get("/metrics")[1]


def test_tabs_of_one_user_count_once_across_gateways(gateways, people, clients):
    one, two = gateways
    alice_user, bob_user = people
    tabs = [clients(gw, alice_user) for gw in (one, one, two)]
    ids = {join(tab)[0] for tab in tabs}
    assert len(ids) == 1  # one person, whichever gateway
    bob = clients(two, bob_user)
    _, seen = join(bob)
    assert seen["count"] == 2 and sorted(names(seen)) == ["alice", "bob"]
    # Two tabs closing (one per gateway) leave alice present: every list
    # bob hears until a newcomer's shows her still there.
    tabs[0].close()
    tabs[2].close()
    time.sleep(0.2)  # no event says a close was handled; the newcomer bounds it
    join(clients(one))

    def newcomer_seen(message: dict) -> bool:
        assert "alice" in names(message), message
        return message["anonymous"] == 1

    assert presence_where(bob, newcomer_seen)["count"] == 3
    tabs[1].close()
    assert names(presence_where(bob, lambda m: m["count"] == 2)) == ["bob"]


def test_anonymous_visitors_are_counted_never_named(gateways, people, clients):
    one, two = gateways
    alice = clients(one, people[0])
    join(alice)
    for gateway in (one, two):
        join(clients(gateway))
    seen = presence_where(alice, lambda m: m["count"] == 3)
    assert seen["anonymous"] == 2
    assert names(seen) == ["alice"]
    assert all(set(p) == {"id", "name", "since"} for p in seen["people"])


def test_who_may_not_subscribe_may_not_join_and_is_never_told(
    gateways, people, clients
):
    one, two = gateways
    alice_user, bob_user = people
    doc = Document.objects.create(owner=alice_user, title="a")  # only alice sees it
    url = doc.get_api_url()
    alice = clients(one, alice_user)
    join(alice, url)
    for gateway in (one, two):
        for who in (bob_user, None):
            stranger = clients(gateway, who)
            answer = stranger.request(action="join", url=url)
            assert answer["type"] == "error" and answer["code"] == "forbidden", answer
            assert_nothing_before_pong(stranger)
    # Nobody joined: alice's list never changed.
    alice.send(action="ping")
    assert alice.recv() == {"type": "pong"}


def test_a_killed_gateways_members_leave_within_four_heartbeats(
    gateways, people, clients
):
    one, two = gateways
    alice = clients(one, people[0])
    join(alice)
    bob = clients(two, people[1])
    join(bob)
    presence_where(alice, lambda m: m["count"] == 2)
    two.signal(signal.SIGKILL)
    killed = time.monotonic()
    assert names(presence_where(alice, lambda m: m["count"] == 1)) == ["alice"]
    # Within 4 heartbeats (docs/protocol.md), with room for a loaded machine.
    assert time.monotonic() - killed < 4 * HEARTBEAT + 1.5
    one.wait_for_log("stopped: its members leave")


def test_a_join_is_answered_like_a_subscribe_for_bad_requests(gateways, clients):
    one, _ = gateways
    client = clients(one)
    answer = client.request(action="join", url="")
    assert answer["type"] == "error" and answer["code"] == "invalid"
    answer = client.request(action="leave", url=5)
    assert answer["type"] == "error" and answer["code"] == "invalid"
    # Leaving a URL never joined is answered all the same.
    assert client.request(action="leave", url=OPEN_URL) == {
        "type": "left",
        "url": OPEN_URL,
    }


def test_a_revoked_subscription_leaves_presence(redis_server, people):
    """A logout ends the subscription (docs/protocol.md, *Revocation*): the
    person leaves with it, and the others hear it."""
    alice_user, bob_user = people
    doc = Document.objects.create(owner=alice_user, title="a")
    short = {"AUTHORIZATION_TTL": 1, "PRESENCE_HEARTBEAT": HEARTBEAT}
    with Gateway(redis_server.url, pushy_settings=short) as gw:
        browser, cookie = logged_in(alice_user)
        alice = Client(gw.ws_url, timeout=10, cookie=cookie)
        bob = Client(gw.ws_url, timeout=10, cookie=login(bob_user))
        try:
            join(alice, "/api/doc/")  # any logged-in user may GET it
            join(bob, "/api/doc/")
            presence_where(alice, lambda m: m["count"] == 2)
            browser.logout()
            update = Update(
                url=doc.get_api_url(), event="update", model="testapp.document",
                pk=doc.pk, collection="/api/doc/",
            )  # fmt: skip
            logged_out = time.monotonic()
            while True:  # an update every 50 ms until alice's is refused
                publish(gw.redis_url, update)
                message = alice.recv()
                if message["type"] == "error":
                    assert message["code"] == "forbidden", message
                    break
                assert time.monotonic() - logged_out < 10, "never revoked"
                time.sleep(0.05)
            seen = presence_where(bob, lambda m: m["count"] == 1)
            assert names(seen) == ["bob"]
        finally:
            alice.close()
            bob.close()


def test_presence_lost_from_redis_is_written_again(gateways, people, clients):
    """Redis lost the presence keys (a restart without persistence, a flush):
    each gateway finds itself missing at its next heartbeat and writes its
    members again, so people joining later see everyone."""
    one, two = gateways
    alice = clients(one, people[0])
    join(alice)
    client = redis.Redis.from_url(one.redis_url)
    try:
        client.delete(*client.keys("*:presence:*"))
    finally:
        client.close()
    bob = clients(two, people[1])
    _, first = join(bob)
    if first["count"] == 1:  # read before gateway one wrote alice again
        first = presence_where(bob, lambda m: m["count"] == 2)
    assert sorted(names(first)) == ["alice", "bob"]
    assert names(presence_where(alice, lambda m: m["count"] == 2)) == [
        "alice",
        "bob",
    ]


def test_a_stopped_gateways_members_leave_at_once(redis_server, people):
    """SIGTERM: the gateway clears its own members as it stops, however long
    its heartbeat (here 30 s: expiry would take 2 minutes)."""
    slow = {"PRESENCE_HEARTBEAT": 30, "DB_POOL_SIZE": 2}
    with Gateway(redis_server.url, pushy_settings=slow) as one:
        two = Gateway(redis_server.url, pushy_settings=slow).start()
        alice = Client(one.ws_url, timeout=10, cookie=login(people[0]))
        bob = Client(two.ws_url, timeout=10, cookie=login(people[1]))
        try:
            join(alice)
            join(bob)
            presence_where(alice, lambda m: m["count"] == 2)
            stopped = time.monotonic()
            assert two.stop() == 0
            assert names(presence_where(alice, lambda m: m["count"] == 1)) == ["alice"]
            assert time.monotonic() - stopped < 15
        finally:
            alice.close()
            bob.close()
            two.stop()


def test_joining_twice_is_one_presence_with_the_same_id(gateways, clients):
    one, _ = gateways
    anonymous = clients(one)
    you, first = join(anonymous)
    again, second = join(anonymous)
    assert again == you and second["count"] == first["count"] == 1


@pytest.mark.parametrize(
    "hook, shown",
    [("tests.testapp.presence_names.shouted", "ALICE"),
     ("tests.testapp.presence_names.broken", "alice")],  # falls back, logged
)  # fmt: skip
def test_presence_name_names_people(redis_server, django_db_setup, hook, shown):
    alice_user = User.objects.create_user("alice", password="x", first_name="Alice")
    with Gateway(redis_server.url, pushy_settings={"PRESENCE_NAME": hook}) as gw:
        alice = Client(gw.ws_url, timeout=10, cookie=login(alice_user))
        try:
            assert names(join(alice)[1]) == [shown]
        finally:
            alice.close()
        if shown == "alice":
            gw.wait_for_log("PRESENCE_NAME failed")


def test_a_member_whose_url_gets_no_updates_is_asked_again(redis_server, people):
    """A logout ends the presence of a URL nothing is published on (an admin
    change form): members are asked again every AUTHORIZATION_TTL."""
    alice_user, bob_user = people
    short = {"AUTHORIZATION_TTL": 1, "PRESENCE_HEARTBEAT": HEARTBEAT}
    with Gateway(redis_server.url, pushy_settings=short) as gw:
        browser, cookie = logged_in(alice_user)
        alice = Client(gw.ws_url, timeout=10, cookie=cookie)
        bob = Client(gw.ws_url, timeout=10, cookie=login(bob_user))
        try:
            join(alice, "/fn/members/")  # @login_required; never published on
            join(bob, "/fn/members/")
            presence_where(alice, lambda m: m["count"] == 2)
            browser.logout()
            revoked = alice.recv_until(lambda m: m["type"] == "error", timeout=10)
            assert revoked == {
                "type": "error",
                "code": "forbidden",
                "message": "no longer allowed",
                "url": "/fn/members/",
            }
            assert names(presence_where(bob, lambda m: m["count"] == 1)) == ["bob"]
            # Bob, still allowed, stays: no error comes to him.
            assert_nothing_before_pong(bob)
        finally:
            alice.close()
            bob.close()
