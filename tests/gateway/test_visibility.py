"""Visibility follows the object (issue 21 item 3), in a real gateway.

Posts (VISIBILITY_FIELDS: published, author) and articles (not declared) are
shown to everyone once published, to their author always. Their updates are
built as a save builds them (``build_update``, with the visibility token) and
published to the private Redis; the gateway runs the real views as each user.
"Not received" is shown with a marker published last (see test_authorization).
"""

import pytest
from django.contrib.auth.models import User

from pushy.messages import Update
from pushy.updates import build_update
from tests.gateway.clients import Client, publish
from tests.gateway.test_authorization import (
    MARKER_URL,
    _markers,
    is_marker,
    login,
    stat,
)
from tests.support.gateway import Gateway
from tests.testapp.models import Article, Post

pytestmark = [pytest.mark.timeout(60), pytest.mark.django_db(transaction=True)]

POSTS = "/api/post/"
ARTICLES = "/api/article/"


@pytest.fixture
def gateway(redis_server, django_db_setup):
    # One per test: ids are reused between tests, cached decisions would not know.
    with Gateway(redis_server.url, pushy_settings={"DB_POOL_SIZE": 2}) as gw:
        yield gw


@pytest.fixture
def people():
    return [User.objects.create_user(name, password="x") for name in "abc"]


def change(gateway, obj, **fields) -> None:
    """Change ``obj`` in the database, then publish its update as a save would."""
    type(obj).objects.filter(pk=obj.pk).update(**fields)
    obj.refresh_from_db()
    publish(gateway.redis_url, build_update(obj, "update"))


def connect(gateway, user, *urls) -> Client:
    client = Client(gateway.ws_url, cookie=login(user)[1])
    for url in (*urls, MARKER_URL):
        client.subscribe(url)
    return client


def until_marker(client: Client, n: int) -> list[dict]:
    """What ``client`` received before marker ``n`` (in order)."""
    got = []
    while not is_marker(message := client.recv(), n):
        got.append(message)
    return got


def publish_marker(redis_url: str) -> int:
    """test_authorization's marker, with a constant visibility token: after its
    first one, markers cost no view runs (the counts below are the posts')."""
    n = next(_markers)
    publish(
        redis_url,
        Update(url=MARKER_URL, event="update", model="testapp.shot", pk=999,
               collection="/api/shot/", data={"n": n}, visibility="marker"),
    )  # fmt: skip
    return n


def settled(gateway, *clients: Client) -> list[list[dict]]:
    n = publish_marker(gateway.redis_url)
    return [until_marker(client, n) for client in clients]


def test_hiding_a_post_tells_who_saw_it_once_without_its_data(gateway, people):
    author, bob, carol = people
    post = Post.objects.create(author=author, published=True, title="hello")
    writer = connect(gateway, author, POSTS)
    bobs = [connect(gateway, bob, POSTS) for _ in range(3)]  # three tabs, one user
    carols = connect(gateway, carol, POSTS)
    everyone = [writer, *bobs, carols]
    try:
        change(gateway, post, title="v1")
        for got in settled(gateway, *everyone):
            assert [(m["type"], m["data"]) for m in got] == [
                ("update", {"title": "v1"})
            ]
        before = stat(gateway, "authorizations")
        change(gateway, post, published=False, title="secret")
        received = settled(gateway, *everyone)
        hidden = {"type": "hidden", "url": post.get_api_url(), "collection": POSTS}
        for got in received[1:]:
            assert got == [hidden]  # nothing of the update: no title, no pk
        assert [m["data"] for m in received[0]] == [{"title": "secret"}]  # the author
        # Asked again once per user (3), whatever the number of connections.
        assert stat(gateway, "authorizations") - before == 3
        assert stat(gateway, "updates_hidden") == 4
        # Hidden stays hidden: later changes reach the author only, nothing else.
        change(gateway, post, title="secret 2")
        received = settled(gateway, *everyone)
        assert [m["data"] for m in received[0]] == [{"title": "secret 2"}]
        assert received[1:] == [[]] * 4
    finally:
        for client in everyone:
            client.close()


def test_a_draft_published_within_the_ttl_of_a_cached_no_appears(gateway, people):
    author, bob, _ = people
    draft = Post.objects.create(author=author, published=False, title="draft")
    reader = connect(gateway, bob, POSTS)
    try:
        change(gateway, draft, title="draft 2")
        assert settled(gateway, reader) == [[]]  # bob's "no" is cached now
        change(gateway, draft, published=True, title="out")
        got = settled(gateway, reader)[0]
        assert [(m["type"], m["event"], m["data"]) for m in got] == [
            ("update", "update", {"title": "out"})
        ]
        assert "visibility" not in got[0]  # the token stays between Redis and gateway
    finally:
        reader.close()


def test_only_a_declared_models_visibility_changes_are_asked_again(gateway, people):
    author, bob, _ = people
    post = Post.objects.create(author=author, published=True, title="p")
    article = Article.objects.create(author=author, published=True, title="a")
    reader = connect(gateway, bob, POSTS, ARTICLES)
    try:
        change(gateway, post, title="p0")
        change(gateway, article, title="a0")
        assert len(settled(gateway, reader)[0]) == 2
        before = stat(gateway, "authorizations")
        for n in range(1, 6):
            change(gateway, post, title=f"p{n}")  # same token: cached answers hold
        assert len(settled(gateway, reader)[0]) == 5
        assert stat(gateway, "authorizations") == before
        for n in range(1, 6):
            change(gateway, article, title=f"a{n}")  # no token: each may change it
            assert len(settled(gateway, reader)[0]) == 1  # (updates in a row
            # while a question is asked share its answer: settle each one)
        assert stat(gateway, "authorizations") - before == 5
    finally:
        reader.close()


def test_collection_subscribers_learn_nothing_of_posts_they_never_saw(gateway, people):
    author, bob, carol = people
    draft = Post.objects.create(author=author, published=False, title="draft")
    article = Article.objects.create(author=author, published=False, title="draft")
    reader = connect(gateway, bob, POSTS, ARTICLES)
    try:
        # First updates the gateway sees (nothing known): nothing for bob.
        change(gateway, draft, title="d1")
        change(gateway, article, title="d1")
        assert settled(gateway, reader) == [[]]
        # A visibility change that keeps them from bob (another author): bob's
        # cached "no" stands for what he saw, so nothing again, not even "hidden".
        change(gateway, draft, author=carol)
        change(gateway, article, author=carol)
        assert settled(gateway, reader) == [[]]
        assert stat(gateway, "updates_hidden") == 0
    finally:
        reader.close()


def test_an_object_subscriber_of_a_hidden_post_is_told_and_unsubscribed(
    gateway, people
):
    author, bob, _ = people
    post = Post.objects.create(author=author, published=True, title="p")
    reader = connect(gateway, bob, post.get_api_url())
    try:
        subscriptions = gateway.get_json("/stats")["subscriptions"]
        change(gateway, post, published=False)
        assert settled(gateway, reader) == [
            [{"type": "hidden", "url": post.get_api_url(), "collection": POSTS}]
        ]
        assert gateway.get_json("/stats")["subscriptions"] == subscriptions - 1
        change(gateway, post, published=True)  # no longer subscribed: nothing
        assert settled(gateway, reader) == [[]]
    finally:
        reader.close()


def test_a_list_gains_a_published_member_and_loses_it_again(gateway, people):
    author, bob, _ = people
    post = Post.objects.create(author=author, published=False, title="p")
    reader = connect(gateway, bob, POSTS)
    try:
        steps = [
            (False, []),
            (True, ["update"]),
            (False, ["hidden"]),
            (True, ["update"]),
        ]
        for published, expected in steps:
            change(gateway, post, published=published)
            got = settled(gateway, reader)[0]
            assert [m["type"] for m in got] == expected, (published, got)
    finally:
        reader.close()


def test_a_list_loses_a_post_hidden_in_the_first_update_the_gateway_sees(
    gateway, people
):
    """No update of the post came before (a fresh gateway, an old post): the
    token the saving process loaded it with tells the gateway the save hid it."""
    author, bob, _ = people
    post = Post.objects.create(author=author, published=True, title="p")
    reader = connect(gateway, bob, POSTS)
    try:
        change(gateway, post, published=False)
        assert settled(gateway, reader) == [
            [{"type": "hidden", "url": post.get_api_url(), "collection": POSTS}]
        ]
    finally:
        reader.close()
