"""The default authorization in a real gateway: what a user may GET, they may see.

Users, sessions and documents live in the test database the gateway reads;
updates go through the private Redis. "Not received" is shown with a marker:
a client's updates arrive in order, so when the marker (published last) is the
next message, the update published before it was withheld.
"""

import itertools
import time

import pytest
from django.contrib.auth.models import Permission, User

from pushy.messages import Update
from tests.gateway.clients import Client, login, publish
from tests.support.gateway import Gateway
from tests.testapp.models import Document

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.django_db(transaction=True),
    pytest.mark.gateway_settings(DB_POOL_SIZE=2),  # the gateway fixture's
]

MARKER_URL = "/api/shot/999/"
_markers = itertools.count(1)


def doc_update(doc: Document, event: str = "update", collection: str | None = None):
    return Update(
        url=doc.get_api_url(),
        event=event,
        model="testapp.document",
        pk=doc.pk,
        collection=collection or "/api/doc/",
        data={"title": doc.title},
    )


def publish_marker(redis_url: str) -> int:
    """Publish an update every client here may see; its number."""
    n = next(_markers)
    publish(
        redis_url,
        Update(url=MARKER_URL, event="update", model="testapp.shot", pk=999,
               collection="/api/shot/", data={"n": n}),
    )  # fmt: skip
    return n


def next_update(client: Client) -> dict:
    message = client.recv()
    assert message["type"] in ("update", "error"), message
    return message


def is_marker(message: dict, n: int) -> bool:
    return message.get("url") == MARKER_URL and message["data"] == {"n": n}


@pytest.fixture
def people():
    alice = User.objects.create_user("alice", password="x")
    bob = User.objects.create_user("bob", password="x")
    return alice, bob


def stat(gateway: Gateway, name: str) -> int:
    return gateway.get_json("/stats")[name]


def test_subscribe_is_allowed_exactly_when_the_view_answers_2xx(
    gateway, people, open_client
):
    alice, bob = people
    doc = Document.objects.create(owner=alice, title="a")
    _, alice_cookie = login(alice)
    _, bob_cookie = login(bob)
    clients = {
        "alice": open_client(gateway, cookie=alice_cookie),
        "bob": open_client(gateway, cookie=bob_cookie),
        "anonymous": open_client(gateway),
    }
    expected = {
        # url: who may subscribe
        doc.get_api_url(): {"alice"},  # DRF object permission
        "/api/doc/": {"alice", "bob"},  # IsAuthenticated, filtered list
        f"/api/own-doc/{doc.pk}/": {"alice"},  # filtered queryset: 404 for others
        "/cbv/members/": {"alice", "bob"},  # LoginRequiredMixin
        "/fn/members/": {"alice", "bob"},  # @login_required
        "/fn/shot-viewers/": set(),  # @permission_required: nobody has it
        "/api/shot/1/": {"alice", "bob", "anonymous"},
        "/nowhere/": set(),  # unresolvable
    }
    for url, allowed in expected.items():
        for name, client in clients.items():
            answer = client.request(action="subscribe", url=url)
            wanted = "subscribed" if name in allowed else "error"
            assert answer["type"] == wanted, (name, url, answer)
            if wanted == "error":
                assert answer["code"] == "forbidden"


def test_collection_subscribers_get_only_objects_they_may_get(
    gateway, people, open_client
):
    alice, bob = people
    alices = Document.objects.create(owner=alice, title="alice's")
    bobs = Document.objects.create(owner=bob, title="bob's")
    alice_client = open_client(gateway, cookie=login(alice)[1])
    bob_client = open_client(gateway, cookie=login(bob)[1])
    anonymous = open_client(gateway)
    for client in (alice_client, bob_client):
        client.subscribe("/api/doc/")
        client.subscribe(MARKER_URL)
    # Anyone may GET /api/public-doc/; a document's own URL is the owner's.
    anonymous.subscribe("/api/public-doc/")
    anonymous.subscribe(MARKER_URL)
    for doc in (alices, bobs):
        publish(gateway.redis_url, doc_update(doc))
        publish(gateway.redis_url, doc_update(doc, collection="/api/public-doc/"))
    n = publish_marker(gateway.redis_url)
    got = next_update(alice_client)
    assert (got["url"], got["data"]) == (alices.get_api_url(), {"title": "alice's"})
    assert is_marker(next_update(alice_client), n)
    got = next_update(bob_client)
    assert (got["url"], got["data"]) == (bobs.get_api_url(), {"title": "bob's"})
    assert is_marker(next_update(bob_client), n)
    assert is_marker(next_update(anonymous), n)
    assert stat(gateway, "updates_withheld") >= 4


def test_deletes_reach_only_who_was_known_to_see_the_object(
    gateway, people, open_client
):
    alice, bob = people
    seen = Document.objects.create(owner=alice, title="seen")
    unseen = Document.objects.create(owner=alice, title="unseen")
    alice_client = open_client(gateway, cookie=login(alice)[1])
    bob_client = open_client(gateway, cookie=login(bob)[1])
    for client in (alice_client, bob_client):
        client.subscribe("/api/doc/")
        client.subscribe(MARKER_URL)
    publish(gateway.redis_url, doc_update(seen))
    assert next_update(alice_client)["event"] == "update"
    # The objects are gone: their views would answer 404 to anyone now.
    Document.objects.filter(pk__in=[seen.pk, unseen.pk]).delete()
    publish(gateway.redis_url, doc_update(seen, "delete"))
    publish(gateway.redis_url, doc_update(unseen, "delete"))
    n = publish_marker(gateway.redis_url)
    got = next_update(alice_client)
    assert (got["event"], got["pk"]) == ("delete", seen.pk)
    # The never-decided delete is withheld even from its owner (documented).
    assert is_marker(next_update(alice_client), n)
    assert is_marker(next_update(bob_client), n)


def test_many_connections_of_one_user_cost_one_view_run(gateway, people, open_client):
    alice, _ = people
    _, cookie = login(alice)
    same_user = [open_client(gateway, cookie=cookie) for _ in range(20)]
    # Another session of the same user shares the decisions too.
    same_user.append(open_client(gateway, cookie=login(alice)[1]))
    anonymous = [open_client(gateway) for _ in range(20)]
    for client in same_user:
        client.subscribe("/api/doc/")
    for client in anonymous:
        client.subscribe("/api/shot/")
    doc = Document.objects.create(owner=alice, title="new")
    before = stat(gateway, "authorizations")
    publish(gateway.redis_url, doc_update(doc))
    publish(
        gateway.redis_url,
        Update(url="/api/shot/4242/", event="create", model="testapp.shot",
               pk=4242, collection="/api/shot/"),
    )  # fmt: skip
    for client in same_user:
        assert next_update(client)["pk"] == doc.pk
    for client in anonymous:
        assert next_update(client)["pk"] == 4242
    # One view run for alice's document, one for the anonymous shot.
    assert stat(gateway, "authorizations") - before == 2


def test_held_updates_keep_their_order(gateway, people, open_client):
    alice, _ = people
    docs = [Document.objects.create(owner=alice, title=str(i)) for i in range(30)]
    client = open_client(gateway, cookie=login(alice)[1])
    client.subscribe("/api/doc/")
    for doc in docs:  # 30 unknown decisions: held, asked, sent in order
        publish(gateway.redis_url, doc_update(doc))
    assert [next_update(client)["pk"] for _ in docs] == [d.pk for d in docs]


def test_allow_all_restores_the_open_behaviour(start_gateway, open_client):
    gw = start_gateway(AUTHORIZE="pushy.authorization.allow_all")
    client = open_client(gw)
    client.subscribe("/nowhere/")
    client.subscribe("/api/doc/")
    publish(gw.redis_url, doc_update(Document(pk=5, title="x", owner_id=1)))
    assert next_update(client)["data"] == {"title": "x"}
    assert stat(gw, "authorizations") == 0


def test_a_custom_authorize_also_filters_collection_members(start_gateway, open_client):
    gw = start_gateway(AUTHORIZE="tests.testapp.auth.only_public")
    client = open_client(gw)
    client.subscribe("/api/things/")
    client.subscribe(MARKER_URL)
    for url in ["/api/things/private/1/", "/api/things/2/"]:
        publish(
            gw.redis_url,
            Update(url=url, event="update", model="testapp.shot", pk=1,
                   collection="/api/things/"),
        )  # fmt: skip
    assert next_update(client)["url"] == "/api/things/2/"
    n = publish_marker(gw.redis_url)
    assert is_marker(next_update(client), n)


def test_a_logout_in_another_process_ends_the_subscriptions(
    people, start_gateway, open_client
):
    alice, _ = people
    doc = Document.objects.create(owner=alice, title="mine")
    gw = start_gateway(AUTHORIZATION_TTL=1)
    browser, cookie = login(alice)
    client = open_client(gw, cookie=cookie)
    client.subscribe(doc.get_api_url())
    client.subscribe("/api/doc/")
    client.subscribe(MARKER_URL)  # anyone may: it stays
    publish(gw.redis_url, doc_update(doc))
    assert next_update(client)["pk"] == doc.pk  # once as object, once only
    browser.logout()  # deletes the session row the gateway reads
    logged_out = time.monotonic()
    errors = {}
    while len(errors) < 2:
        publish(gw.redis_url, doc_update(doc))
        message = client.recv()
        if message["type"] == "error":
            errors[message["url"]] = message
        assert time.monotonic() - logged_out < 5, "updates never stopped"
        time.sleep(0.05)  # a poll: an update every 50 ms until refused
    assert {m["code"] for m in errors.values()} == {"forbidden"}
    assert set(errors) == {doc.get_api_url(), "/api/doc/"}
    n = publish_marker(gw.redis_url)
    publish(gw.redis_url, doc_update(doc))
    m = publish_marker(gw.redis_url)
    assert is_marker(next_update(client), n)
    assert is_marker(next_update(client), m)
    assert stat(gw, "revocations") == 2
    assert gw.get_json("/stats")["subscriptions"] == 1


def test_subscribe_churn_never_queues_more_than_one_question_per_connection(
    gateway, open_client
):
    clients = [open_client(gateway, timeout=20) for _ in range(3)]
    for k, client in enumerate(clients):
        for n in range(12):  # 12 subscribes sent at once, each a 0.1 s view
            client.send(action="subscribe", url=f"/fn/slow/{k * 100 + n}/")
            client.send(action="unsubscribe", url=f"/fn/slow/{k * 100 + n}/")
    most, started = 0, time.monotonic()
    while stat(gateway, "authorizations") < 36:
        most = max(most, gateway.get_json("/stats")["authorizations_pending"])
        assert time.monotonic() - started < 20, "the questions never got answered"
        time.sleep(0.02)  # a poll of /stats while the questions are asked
    # The readers waited for each answer: one question per connection at a time.
    assert 1 <= most <= len(clients)
    for client in clients:
        answers = [client.recv()["type"] for _ in range(24)]
        assert answers == ["subscribed", "unsubscribed"] * 12


def test_a_removed_permission_ends_the_subscription_within_the_ttl(
    start_gateway, open_client
):
    viewer = User.objects.create_user("viewer", password="x")
    permission = Permission.objects.get(codename="view_shot")
    viewer.user_permissions.add(permission)
    url = "/cbv/shot-viewers/"  # PermissionRequiredMixin
    update = Update(url=url, event="update", model="testapp.shot", pk=1)
    gw = start_gateway(AUTHORIZATION_TTL=1)
    client = open_client(gw, cookie=login(viewer)[1])
    client.subscribe(url)
    publish(gw.redis_url, update)
    assert next_update(client)["url"] == url
    viewer.user_permissions.remove(permission)
    removed = time.monotonic()
    while True:
        publish(gw.redis_url, update)
        message = next_update(client)
        if message["type"] == "error":
            break
        time.sleep(0.05)  # a poll: an update every 50 ms until refused
    # Within the TTL (1 s), give or take a poll and a view run.
    assert time.monotonic() - removed < 1.8
    assert (message["code"], message["url"]) == ("forbidden", url)
