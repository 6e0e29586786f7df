import json
import uuid

import pytest

from pushy.messages import Update, build_update, channel_name, parent_url
from tests.testapp.models import Note, Session, Shot


def test_encode_is_the_wire_body_in_order():
    update = Update(url="/api/shot/3/", event="update", model="testapp.shot", pk=3)
    assert update.encode() == (
        b'{"url":"/api/shot/3/","event":"update","model":"testapp.shot","pk":3}'
    )


def test_optional_fields_appear_only_when_set():
    update = Update(
        url="/a/1/", event="create", model="x.y", pk=1, collection="/a/", data={"k": 1}
    )
    assert json.loads(update.encode()) == {
        "url": "/a/1/",
        "event": "create",
        "model": "x.y",
        "pk": 1,
        "collection": "/a/",
        "data": {"k": 1},
    }


def test_message_adds_type_first():
    update = Update(url="/a/1/", event="delete", model="x.y", pk=1)
    assert list(update.as_message()) == ["type", "url", "event", "model", "pk"]
    assert update.as_message()["type"] == "update"


def test_decode_round_trips():
    update = Update(url="/a/1/", event="create", model="x.y", pk="s", collection="/a/")
    assert Update.decode(update.encode()) == update


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1]",
        b'{"url":"/a/"}',
        b'{"url":1,"event":"update","model":"m","pk":1}',
        b'{"url":"/a/","event":"explode","model":"m","pk":1}',
        b"\xff",
    ],
)
def test_decode_rejects_what_is_not_an_update(body):
    with pytest.raises(ValueError):
        Update.decode(body)


def test_unknown_event_is_refused():
    with pytest.raises(ValueError, match="event must be one of"):
        Update(url="/a/", event="created", model="x.y", pk=1)


@pytest.mark.parametrize(
    "url, parent",
    [
        ("/api/shot/3/", "/api/shot/"),
        ("/api/shot/3", "/api/shot/"),
        ("/api/shot/3/?x=1", "/api/shot/"),
        ("http://example.com/api/shot/3/", "http://example.com/api/shot/"),
        ("/shot/", None),
        ("/", None),
        ("", None),
    ],
)
def test_parent_url(url, parent):
    assert parent_url(url) == parent


def test_channel_uses_prefix(settings):
    settings.PUSHY_SETTINGS = {**settings.PUSHY_SETTINGS, "CHANNEL_PREFIX": "site1:"}
    assert channel_name("testapp.shot") == "site1:testapp.shot"


def test_build_update_uses_list_url_and_data():
    shot = Shot(pk=7, title="Sunset")
    assert build_update(shot, "update").as_dict() == {
        "url": "/api/shot/7/",
        "event": "update",
        "model": "testapp.shot",
        "pk": 7,
        "collection": "/api/shot/",
        "data": {"title": "Sunset"},
    }


def test_build_update_falls_back_to_parent_url():
    update = build_update(Session(pk=2, name="s"), "create")
    assert update.collection == "/api/session/"
    assert update.data is None
    assert update.channel == "pushy_testapp.session"


def test_string_and_uuid_pks_travel_as_text():
    assert build_update(Note(slug="hello"), "update").pk == "hello"
    value = uuid.UUID(int=5)
    assert Update(url="/u/", event="update", model="a.b", pk=str(value)).pk == str(
        value
    )
