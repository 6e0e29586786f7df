import json
import uuid

import pytest

from pushy.channels import channel_name
from pushy.exceptions import InvalidUpdate
from pushy.messages import Update
from pushy.object_urls import parent_url
from pushy.updates import build_update
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


# Types are checked where an update is read (the gateway) --------------------


@pytest.mark.parametrize(
    "body, reason",
    [
        (b'{"url":"/a/","event":"update","model":"m","pk":1,"collection":[]}', "list"),
        (b'{"url":"/a/","event":"update","model":"m","pk":1,"collection":{}}', "dict"),
        (b'{"url":"/a/","event":"update","model":"m","pk":1,"data":[1]}', "list"),
        (b'{"url":"/a/","event":"update","model":"m","pk":1,"data":"x"}', "str"),
        (b'{"url":"/a/","event":"update","model":"m","pk":[1]}', "list"),
        (b'{"url":"/a/","event":"update","model":"m","pk":true}', "bool"),
        (b'{"url":"/a/","event":"update","model":"m","pk":1.5}', "float"),
        (b'{"url":"/a/","event":"update","model":"m","pk":null}', "None"),
        (b'{"url":"/a/","event":"update","model":7,"pk":1}', "int"),
        (b'{"url":"/a/","event":["update"],"model":"m","pk":1}', "event"),
        (b'{"url":"/a/","event":"update","model":"m","pk":1,"data":{"x":NaN}}', "NaN"),
        (b'{"url":"/a/","event":"update","model":"m","pk":Infinity}', "Infinity"),
        (b'{"url":"/a/","event":"update","model":"m","pk":-Infinity}', "Infinity"),
        (b"[" * 100_000 + b"]" * 100_000, "deep"),
        (b'{"url":"/a/","event":"update","model":"m","pk":' + b"9" * 5000 + b"}", ""),
        (b"\xef\xbb\xbf\xff\xfe", ""),
        (b"", ""),
    ],
)
def test_decode_checks_every_field_and_raises_only_value_error(body, reason):
    with pytest.raises(ValueError) as raised:
        Update.decode(body)
    if reason == "deep":
        assert "nested too deeply" in str(raised.value)
    else:
        assert reason in str(raised.value)


def test_decode_ignores_keys_of_later_versions_and_accepts_null_optionals():
    body = b'{"url":"/a/","event":"create","model":"m","pk":"k","collection":null,'
    body += b'"data":null,"priority":3,"_body":1}'
    assert Update.decode(body) == Update(url="/a/", event="create", model="m", pk="k")


def test_a_version_given_at_publish_is_decoded_and_sent_on():
    body = (
        b'{"url":"/a/","event":"update","model":"m","pk":1,"version":1764547200000000}'
    )
    update = Update.decode(body)
    assert update.version == 1764547200000000
    assert update.as_message()["version"] == 1764547200000000
    assert "version" not in Update(url="/a/", event="update", model="m", pk=1).as_dict()


@pytest.mark.parametrize("version", ["1", 1.5, -1, True, [1]])
def test_a_version_that_is_not_a_non_negative_int_is_refused(version):
    body = json.dumps(
        {"url": "/a/", "event": "update", "model": "m", "pk": 1, "version": version}
    )
    with pytest.raises(ValueError, match="version must be"):
        Update.decode(body)


def test_update_refuses_wrong_types_when_built_by_hand():
    with pytest.raises(InvalidUpdate, match="collection must be a str"):
        Update(url="/a/", event="update", model="m", pk=1, collection=["/a/"])


def test_encode_refuses_nan_and_infinity():
    for value in (float("nan"), float("inf"), float("-inf")):
        update = Update(url="/a/", event="update", model="m", pk=1, data={"x": value})
        with pytest.raises(InvalidUpdate, match="not JSON"):
            update.encode()


# ... and where it is built (the publisher) -----------------------------------


def test_a_list_url_names_the_model_and_the_method(monkeypatch):
    monkeypatch.setattr(Shot, "get_api_list_url", lambda self: ["/api/shot/"])
    with pytest.raises(InvalidUpdate) as raised:
        build_update(Shot(pk=1, title="t"), "update")
    assert str(raised.value) == (
        "testapp.shot.get_api_list_url() returned a list, not a str or None"
    )


def test_a_non_string_object_url_is_refused(monkeypatch):
    monkeypatch.setattr(Shot, "get_api_url", lambda self: 3)
    with pytest.raises(InvalidUpdate, match=r"testapp.shot.get_api_url\(\) returned"):
        build_update(Shot(pk=1, title="t"), "update")


def test_a_none_list_url_means_no_collection(monkeypatch):
    monkeypatch.setattr(Shot, "get_api_list_url", lambda self: None)
    assert build_update(Shot(pk=1, title="t"), "update").collection is None


@pytest.mark.parametrize(
    "data, problem",
    [
        ([1, 2], "returned a list, not a dict"),
        ({"x": float("nan")}, "not JSON"),
        ({"x": float("inf")}, "not JSON"),
        ({"x": object()}, "not JSON"),
    ],
)
def test_bad_data_names_get_pushy_data(monkeypatch, data, problem):
    monkeypatch.setattr(Shot, "get_pushy_data", lambda self: data)
    with pytest.raises(InvalidUpdate) as raised:
        build_update(Shot(pk=1, title="t"), "update")
    assert str(raised.value).startswith("testapp.shot.get_pushy_data() returned")
    assert problem in str(raised.value)


def test_an_update_over_max_update_bytes_is_refused(settings):
    settings.PUSHY_SETTINGS = {**settings.PUSHY_SETTINGS, "MAX_UPDATE_BYTES": 1000}
    build_update(Shot(pk=1, title="x" * 800), "update")
    with pytest.raises(InvalidUpdate, match="over MAX_UPDATE_BYTES"):
        build_update(Shot(pk=1, title="x" * 1000), "update")


def test_the_default_bound_is_one_mebibyte():
    build_update(Shot(pk=1, title="x" * 1_000_000), "update")
    with pytest.raises(InvalidUpdate, match=r"over MAX_UPDATE_BYTES \(1,048,576\)"):
        build_update(Shot(pk=1, title="x" * (1 << 20)), "update")
