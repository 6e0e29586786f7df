"""VISIBILITY_FIELDS: the token a save carries, and the checks of the setting."""

import pytest
from django.contrib.auth.models import User
from django.core.checks import run_checks
from django.test import override_settings

from pushy.messages import Update
from pushy.updates import build_or_refuse, build_update, visibility_token
from tests.testapp.models import Article, Post

MODELS = ["testapp.post", "testapp.article"]


def test_the_token_follows_the_declared_fields_only(db):
    author = User.objects.create_user("a")
    post = Post.objects.create(author=author, published=False, title="t")
    token = visibility_token(post)
    post.title = "another title"
    assert visibility_token(post) == token
    post.published = True
    assert visibility_token(post) not in (token, None)
    post.published, post.author = False, User.objects.create_user("b")
    assert visibility_token(post) != token
    assert visibility_token(Article(title="t")) is None  # not declared


def test_an_empty_list_means_one_token_for_every_save(settings):
    settings.PUSHY_SETTINGS = {
        "MODELS": MODELS,
        "VISIBILITY_FIELDS": {"testapp.post": []},
    }
    tokens = {
        visibility_token(Post(pk=n, published=n % 2, title=str(n))) for n in range(4)
    }
    assert len(tokens) == 1 and None not in tokens


def test_the_token_reaches_redis_never_a_client(db):
    post = Post.objects.create(published=True, title="t")
    update = build_update(post, "update")
    assert update.visibility is not None
    assert b'"visibility"' in update.encode()
    assert Update.decode(update.encode()) == update
    assert "visibility" not in update.as_message()
    assert build_update(post, "delete").visibility is None  # deletes keep their rule
    assert build_or_refuse(post, "update").visibility == update.visibility


def test_a_token_that_is_not_a_short_string_is_refused():
    body = b'{"url":"/a/1/","event":"update","model":"a.b","pk":1,"visibility":7}'
    with pytest.raises(ValueError, match="visibility"):
        Update.decode(body)


def errors(value):
    with override_settings(
        PUSHY_SETTINGS={"MODELS": MODELS, "VISIBILITY_FIELDS": value}
    ):
        return [(m.id, m.msg) for m in run_checks() if m.id.startswith("pushy.")]


def test_valid_declarations_pass():
    assert (
        errors({"testapp.post": ["published", "author_id"], "testapp.article": []})
        == []
    )


@pytest.mark.parametrize(
    "value, expected",
    [
        (["testapp.post"], "pushy.E050"),
        ({"testapp.post": "published"}, "pushy.E050"),
        ({"testapp.shot": ["title"]}, "pushy.E051"),  # installed, not in MODELS
        ({"testapp.post": ["publshed"]}, "pushy.E052"),
    ],
)
def test_mistakes_are_reported(value, expected):
    found = errors(value)
    assert [id_ for id_, _ in found] == [expected], found
    assert "VISIBILITY_FIELDS" in found[0][1]


def test_an_update_carries_the_token_its_object_was_loaded_with(db):
    author = User.objects.create_user("w")
    Post.objects.create(author=author, published=True, title="t")
    post = Post.objects.get()  # loaded: published
    post.published = False
    hidden = build_update(post, "update")
    assert hidden.visibility_was != hidden.visibility
    loaded = visibility_token(Post(author=author, published=True))
    assert hidden.visibility_was == loaded
    post.save()  # a save: the next one starts from what it saved
    post.title = "u"
    retitled = build_update(post, "update")
    assert retitled.visibility_was == retitled.visibility == hidden.visibility
    # A create has no "was"; a deferred field leaves it unknown (no query).
    created = Post.objects.create(author=author, title="new")
    assert build_update(created, "create").visibility_was is None
    deferred = Post.objects.defer("published").get(pk=post.pk)
    assert build_update(deferred, "update").visibility_was is None
    assert "visibility_was" not in hidden.as_message()
