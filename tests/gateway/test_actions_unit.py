"""In-process tests of the client-action table and the replies it sends.

A real ``Hub`` and ``Stats`` behind a stand-in connection (it records what it
is sent and runs a waiting step at once) and a stand-in authorizer (answers
from a dict); last, real connections on fake sockets (tests/gateway/fake_io.py)
show a bad message or frame answered to its own client only.
tests/gateway/test_protocol.py runs the same code in a real runpushy through
sockets; these pin the table, the exact bytes of each reply, and that both
follow docs/protocol.md.
"""

from __future__ import annotations

import json
import re
import struct
from types import SimpleNamespace

import pytest

from pushy.gateway import frames, replies
from pushy.gateway.actions import HANDLERS, MAX_URL_LENGTH, ClientActions
from pushy.gateway.connection import Connection, State
from pushy.gateway.hub import Hub
from pushy.gateway.stats import Stats
from pushy.messages import Update
from tests.conftest import ROOT
from tests.gateway.fake_io import FakeSocket, client_frame, fake_shared

pytestmark = pytest.mark.timeout(10)

PROTOCOL = (ROOT / "docs" / "protocol.md").read_text()


def text_of(frame: bytes) -> str:
    """The payload of one unmasked server text frame."""
    assert frame[0] == 0x81  # FIN, text
    length, start = frame[1], 2
    if length == 126:
        (length,), start = struct.unpack("!H", frame[2:4]), 4
    assert length == len(frame) - start
    return frame[start:].decode()


class FakeConnection:
    """What ``ClientActions`` uses of a ``Connection``, without a socket."""

    def __init__(self) -> None:
        self.urls: set[str] = set()
        self.url_bytes = 0
        self.visitor = SimpleNamespace(session_key=None)
        self.sent: list[str] = []

    def send(self, frame: bytes) -> None:
        self.sent.append(text_of(frame))

    def wait_for(self, step, *args) -> None:
        step(*args)


class DictAuthorizer:
    """Allows what ``allowed`` says; anything else is refused, unexplained."""

    needed = True

    def __init__(self, allowed: dict[str, bool]) -> None:
        self.allowed = allowed

    def allows_now(self, visitor, url):
        return self.allowed.get(url)

    def allows(self, visitor, url, asker=None):
        return self.allowed.get(url, False)

    def who(self, visitor, connection):
        raise LookupError("no session in these tests")


@pytest.fixture
def gateway():
    stats = Stats()
    return SimpleNamespace(
        stats=stats,
        hub=Hub(stats),
        limits=SimpleNamespace(max_subscriptions=2, max_subscription_bytes=64),
        authorizer=DictAuthorizer({"/a/": True, "/b/": True, "/no/": False}),
        versions=None,  # no versioned subscribe here
    )


def actions_of(gateway) -> ClientActions:
    """The actions, wired as the server wires them (shared: limits, stats)."""
    return ClientActions(gateway, gateway.hub, gateway.versions, gateway.authorizer)


def answers(gateway, *requests) -> list[dict]:
    connection = FakeConnection()
    actions = actions_of(gateway)
    for request in requests:
        text = request if isinstance(request, str) else json.dumps(request)
        actions.handle(connection, text.encode())
    return [json.loads(sent) for sent in connection.sent], connection


def test_the_table_holds_the_actions_protocol_md_lists():
    documented = set(re.findall(r'\{"action": "(\w+)"', PROTOCOL))
    assert documented == {"subscribe", "unsubscribe", "join", "leave", "ping"}
    assert set(HANDLERS) == documented


def test_ping_is_answered_pong(gateway):
    sent, _ = answers(gateway, {"action": "ping"})
    assert sent == [{"type": "pong"}]


def test_subscribe_and_unsubscribe_register_and_answer(gateway):
    sent, connection = answers(
        gateway,
        {"action": "subscribe", "url": "/a/"},
        {"action": "subscribe", "url": "/b/"},
    )
    assert sent == [
        {"type": "subscribed", "url": "/a/"},
        {"type": "subscribed", "url": "/b/"},
    ]
    assert connection.urls == {"/a/", "/b/"}
    assert set(gateway.hub.by_url) == {"/a/", "/b/"}
    actions = actions_of(gateway)
    actions.handle(connection, b'{"action": "unsubscribe", "url": "/a/"}')
    actions.handle(connection, b'{"action": "unsubscribe", "url": "/never/"}')
    assert [json.loads(s) for s in connection.sent[2:]] == [
        {"type": "unsubscribed", "url": "/a/"},
        {"type": "unsubscribed", "url": "/never/"},
    ]
    assert set(gateway.hub.by_url) == {"/b/"}


@pytest.mark.parametrize(
    "request_text, message",
    [
        ("not json", "not JSON"),
        ("[1, 2]", "unknown action"),
        ('{"url": "/a/"}', "unknown action"),
        ('{"action": ["ping"]}', "unknown action"),  # unhashable: no table lookup
        ('{"action": "publish"}', "unknown action"),
        ('{"action": "subscribe"}', "url must be a URL string"),
        ('{"action": "unsubscribe", "url": 5}', "url must be a URL string"),
    ],
)
def test_what_is_not_an_action_is_an_invalid_error(gateway, request_text, message):
    sent, connection = answers(gateway, request_text)
    assert sent == [{"type": "error", "code": "invalid", "message": message}]
    assert gateway.stats.errors == 1 and not connection.urls


def test_an_error_names_the_url_cut_to_the_longest_allowed(gateway):
    url = "/" + "x" * (MAX_URL_LENGTH + 10)
    sent, _ = answers(gateway, {"action": "subscribe", "url": url})
    assert sent == [
        {
            "type": "error",
            "code": "invalid",
            "message": "url must be a URL string",
            "url": url[:MAX_URL_LENGTH],
        }
    ]


def test_a_bad_version_is_refused_before_anything_is_registered(gateway):
    sent, connection = answers(
        gateway, {"action": "subscribe", "url": "/a/", "version": -1}
    )
    assert sent[0]["code"] == "invalid" and sent[0]["url"] == "/a/"
    assert not connection.urls


def test_limits_and_refusals_answer_errors_with_their_codes(gateway):
    sent, connection = answers(
        gateway,
        {"action": "subscribe", "url": "/no/"},
        {"action": "subscribe", "url": "/a/"},
        {"action": "subscribe", "url": "/b/"},
        {"action": "subscribe", "url": "/c/"},
    )
    assert sent == [
        {"type": "error", "code": "forbidden", "message": "not allowed", "url": "/no/"},
        {"type": "subscribed", "url": "/a/"},
        {"type": "subscribed", "url": "/b/"},
        {
            "type": "error",
            "code": "limit",
            "message": "too many subscriptions",
            "url": "/c/",
        },
    ]
    assert connection.urls == {"/a/", "/b/"}


def test_each_reply_has_the_keys_and_order_protocol_md_shows():
    update = Update(
        url="/i/3/", event="update", model="shop.item", pk=3, collection="/i/",
        visibility="token",  # for gateways only: never sent
    )  # fmt: skip
    built = {
        replies.PONG: '{"type":"pong"}',
        replies.RESYNC: '{"type":"resync"}',
        replies.subscribed("/u/"): '{"type":"subscribed","url":"/u/"}',
        replies.subscribed("/u/", 7): '{"type":"subscribed","url":"/u/","version":7}',
        replies.unsubscribed("/u/"): '{"type":"unsubscribed","url":"/u/"}',
        replies.resync("/u/", 7): '{"type":"resync","url":"/u/","version":7}',
        replies.hidden("/i/3/", None): '{"type":"hidden","url":"/i/3/"}',
        replies.hidden(
            "/i/3/", "/i/"
        ): '{"type":"hidden","url":"/i/3/","collection":"/i/"}',
        replies.error(
            "limit", "too many"
        ): '{"type":"error","code":"limit","message":"too many"}',
        replies.error("forbidden", "no", "/u/"): (
            '{"type":"error","code":"forbidden","message":"no","url":"/u/"}'
        ),
        replies.joined("/u/", "ab"): '{"type":"joined","url":"/u/","you":"ab"}',
        replies.left("/u/"): '{"type":"left","url":"/u/"}',
        replies.presence("/u/", [{"id": "ab", "name": "x", "since": 1}], 2, 1): (
            '{"type":"presence","url":"/u/","people":[{"id":"ab","name":"x",'
            '"since":1}],"count":2,"anonymous":1}'
        ),
    }
    for frame, text in built.items():
        assert text_of(frame) == text
    sent = json.loads(text_of(replies.update(update)))
    assert sent == update.as_message() and next(iter(sent)) == "type"
    assert "visibility" not in sent and sent["url"] == "/i/3/"
    documented = set(re.findall(r'\{"type": "(\w+)"', PROTOCOL))
    assert documented == {
        "subscribed", "unsubscribed", "pong", "error", "update", "hidden", "resync",
        "joined", "left", "presence",
    }  # fmt: skip
    shown = {json.loads(text)["type"] for text in built.values()} | {sent["type"]}
    assert shown == documented


def test_each_action_goes_through_the_table(gateway, monkeypatch):
    called = []
    monkeypatch.setitem(
        HANDLERS, "ping", lambda actions, connection, request: called.append(request)
    )
    monkeypatch.setitem(HANDLERS, "hello", ClientActions.ping)
    sent, _ = answers(gateway, {"action": "ping", "n": 1}, {"action": "hello"})
    assert called == [{"action": "ping", "n": 1}]
    assert sent == [{"type": "pong"}]  # "hello" answered by the handler it names


class ActionEvents:
    """What the server's ConnectionEvents does with messages: the actions."""

    def __init__(self, actions: ClientActions, hub: Hub) -> None:
        self.actions, self.hub = actions, hub

    def joined(self, connection) -> None:
        self.hub.add(connection)

    def message(self, connection, payload: bytes) -> None:
        self.actions.handle(connection, payload)

    def leaving(self, connection) -> None:
        pass

    def unsubscribe(self, connection) -> None:
        self.hub.remove(connection)

    def ended(self, connection) -> None:
        self.hub.remove(connection)


def test_a_bad_message_or_frame_is_answered_to_its_client_only(gateway):
    """Real connections on fake sockets, around the real actions and hub."""
    shared = fake_shared()
    hub = Hub(shared.stats)
    actions = ClientActions(shared, hub, None, gateway.authorizer)
    events = ActionEvents(actions, hub)
    bad, good = (
        Connection(shared, events, FakeSocket(), visitor=SimpleNamespace())
        for _ in range(2)
    )
    bad.start()
    good.start()

    def client_sends(connection, sent: bytes) -> None:
        connection.sock.incoming += sent
        connection.reader.fire()  # the socket is readable
        shared.loop.run()  # the writers' callbacks

    def texts(connection) -> list[dict]:
        return [json.loads(p) for op, p in connection.sock.frames() if op == 0x1]

    client_sends(bad, client_frame(0x1, b"not json"))
    client_sends(good, client_frame(0x1, b'{"action": "subscribe", "url": "/a/"}'))
    assert texts(bad) == [{"type": "error", "code": "invalid", "message": "not JSON"}]
    assert texts(good) == [{"type": "subscribed", "url": "/a/"}]
    # An unmasked frame breaks the protocol: that client is closed, 1002.
    client_sends(bad, b"\x81\x02hi")
    assert bad.sock.close_codes() == [frames.CLOSE_PROTOCOL_ERROR]
    assert bad.state is State.CLOSED and bad not in hub.connections
    client_sends(good, client_frame(0x1, b'{"action": "ping"}'))
    assert texts(good)[-1] == {"type": "pong"} and good.sock.close_codes() == []
    assert good.state is State.OPEN and hub.by_url["/a/"] == {good}
    assert shared.stats.errors == 2


@pytest.mark.parametrize(
    "hint, message",
    [
        ("yes", "object must be true or false"),
        (1, "object must be true or false"),
        (None, "object must be true or false"),
    ],
)
def test_a_bad_object_hint_is_refused_before_anything_is_registered(
    gateway, hint, message
):
    sent, connection = answers(
        gateway, {"action": "subscribe", "url": "/a/", "object": hint}
    )
    assert sent == [
        {"type": "error", "code": "invalid", "message": message, "url": "/a/"}
    ]
    assert not connection.urls


def test_an_object_hint_on_a_filtered_list_is_refused(gateway):
    gateway.authorizer.allowed["/a/?s=open"] = True
    sent, connection = answers(
        gateway,
        {"action": "subscribe", "url": "/a/?s=open", "object": True},
        {"action": "subscribe", "url": "/a/?s=open", "object": False},
        {"action": "subscribe", "url": "/a/", "object": True},
    )
    assert sent[0]["code"] == "invalid" and sent[0]["url"] == "/a/?s=open"
    assert "query string is a list" in sent[0]["message"]
    assert sent[1:] == [
        {"type": "subscribed", "url": "/a/?s=open"},
        {"type": "subscribed", "url": "/a/"},
    ]
    assert connection.urls == {"/a/?s=open", "/a/"}
