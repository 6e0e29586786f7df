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
from tests.gateway.clients import Client, login, publish
from tests.gateway.test_authorization import MARKER_URL, _markers, is_marker, stat
from tests.testapp.models import Article, Post

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.django_db(transaction=True),
    pytest.mark.gateway_settings(DB_POOL_SIZE=2),  # the gateway fixture's
]

POSTS = "/api/post/"
ARTICLES = "/api/article/"


@pytest.fixture
def people():
    return [User.objects.create_user(name, password="x") for name in "abc"]


def change(gateway, *objects, **fields) -> None:
    """Change each object in the database, then publish its update as a save
    would."""
    for obj in objects:
        type(obj).objects.filter(pk=obj.pk).update(**fields)
        obj.refresh_from_db()
        publish(gateway.redis_url, build_update(obj, "update"))


def post_and_article(author, published: bool) -> tuple[Post, Article]:
    """A post (its visibility declared) and an article (not), alike otherwise."""
    fields = {"author": author, "published": published, "title": "new"}
    return Post.objects.create(**fields), Article.objects.create(**fields)


@pytest.fixture
def connect(gateway, open_client):
    """``connect(user, *urls)``: a client of ``user``'s, subscribed to ``urls``
    and the marker; closed when the test ends."""

    def connect(user, *urls) -> Client:
        client = open_client(gateway, cookie=login(user)[1])
        for url in (*urls, MARKER_URL):
            client.subscribe(url)
        return client

    return connect


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


def test_hiding_a_post_tells_who_saw_it_once_without_its_data(gateway, people, connect):
    author, bob, carol = people
    post = Post.objects.create(author=author, published=True, title="hello")
    writer = connect(author, POSTS)
    bobs = [connect(bob, POSTS) for _ in range(3)]  # three tabs, one user
    carols = connect(carol, POSTS)
    everyone = [writer, *bobs, carols]
    change(gateway, post, title="v1")
    for got in settled(gateway, *everyone):
        assert [(m["type"], m["data"]) for m in got] == [("update", {"title": "v1"})]
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


def test_a_draft_published_within_the_ttl_of_a_cached_no_appears(
    gateway, people, connect
):
    author, bob, _ = people
    draft = Post.objects.create(author=author, published=False, title="draft")
    reader = connect(bob, POSTS)
    change(gateway, draft, title="draft 2")
    assert settled(gateway, reader) == [[]]  # bob's "no" is cached now
    change(gateway, draft, published=True, title="out")
    got = settled(gateway, reader)[0]
    assert [(m["type"], m["event"], m["data"]) for m in got] == [
        ("update", "update", {"title": "out"})
    ]
    assert "visibility" not in got[0]  # the token stays between Redis and gateway


def test_only_a_declared_models_visibility_changes_are_asked_again(
    gateway, people, connect
):
    author, bob, _ = people
    post, article = post_and_article(author, published=True)
    reader = connect(bob, POSTS, ARTICLES)
    change(gateway, post, article, title="0")
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


def test_collection_subscribers_learn_nothing_of_posts_they_never_saw(
    gateway, people, connect
):
    author, bob, carol = people
    drafts = post_and_article(author, published=False)
    reader = connect(bob, POSTS, ARTICLES)
    # First updates the gateway sees (nothing known): nothing for bob.
    change(gateway, *drafts, title="d1")
    assert settled(gateway, reader) == [[]]
    # A visibility change that keeps them from bob (another author): bob's
    # cached "no" stands for what he saw, so nothing again, not even "hidden".
    change(gateway, *drafts, author=carol)
    assert settled(gateway, reader) == [[]]
    assert stat(gateway, "updates_hidden") == 0


def test_an_object_subscriber_of_a_hidden_post_is_told_and_unsubscribed(
    gateway, people, connect
):
    author, bob, _ = people
    post = Post.objects.create(author=author, published=True, title="p")
    reader = connect(bob, post.get_api_url())
    subscriptions = gateway.get_json("/stats")["subscriptions"]
    change(gateway, post, published=False)
    assert settled(gateway, reader) == [
        [{"type": "hidden", "url": post.get_api_url(), "collection": POSTS}]
    ]
    assert gateway.get_json("/stats")["subscriptions"] == subscriptions - 1
    change(gateway, post, published=True)  # no longer subscribed: nothing
    assert settled(gateway, reader) == [[]]


def test_a_list_gains_a_published_member_and_loses_it_again(gateway, people, connect):
    author, bob, _ = people
    post = Post.objects.create(author=author, published=False, title="p")
    reader = connect(bob, POSTS)
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


def test_a_list_loses_a_post_hidden_in_the_first_update_the_gateway_sees(
    gateway, people, connect
):
    """No update of the post came before (a fresh gateway, an old post): the
    token the saving process loaded it with tells the gateway the save hid it."""
    author, bob, _ = people
    post = Post.objects.create(author=author, published=True, title="p")
    reader = connect(bob, POSTS)
    change(gateway, post, published=False)
    assert settled(gateway, reader) == [
        [{"type": "hidden", "url": post.get_api_url(), "collection": POSTS}]
    ]
