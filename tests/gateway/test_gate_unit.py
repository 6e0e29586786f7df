"""Unit tests of the gate's bookkeeping, with an authorizer whose answers the test
holds back and releases: order of held updates, the backlog bound, regrouping.

tests/gateway/test_authorization.py runs the same code in a real runpushy with
real views; these pin the cases a test through sockets cannot time exactly.
"""

import json
import time

import gevent
import gevent.event
import pytest

from pushy.gateway.gate import Gate
from pushy.gateway.hub import Hub
from pushy.gateway.permissions import MISSING
from pushy.gateway.questions import Busy
from pushy.gateway.stats import Stats
from pushy.gateway.visitor import Visitor
from pushy.messages import Update

pytestmark = pytest.mark.timeout(10)


class Who:
    def __init__(self, identity):
        self.identity = identity


class HeldAuthorizer:
    """Knows nothing until the test answers; ``allowed`` says who may see what."""

    # The warm path's view of the real one: nothing is ever steady here, so
    # every verdict goes through identity_now() and known().
    changes = 0
    refresh_within = 0.0
    decisions: dict = {}

    def __init__(self, allowed):
        self.allowed = allowed  # {(identity, url): bool}
        self.known_answers = {}
        self.released = gevent.event.Event()
        self.asked = []

    def steady(self, visitor, subscribed, now):
        return None

    def fanning_out(self, now):
        pass

    def identity_now(self, key, now):
        return key if (key, None) in self.known_answers else MISSING

    def known(self, identity, url, now, stale=False, mark=None):
        return self.known_answers.get((identity, url))

    def prior(self, key, url):
        return self.known_answers.get((key, url))

    def mark(self, url, token, was=None):
        return 0, 0  # SAME: visibility never changes here

    def unmark(self, url):
        pass

    def who(self, key, asker=None):
        self.released.wait()
        self.known_answers[(key, None)] = True
        return Who(key)

    def decide(self, who, url, mark=0, asker=None):
        if (who.identity, url) in self.known_answers:  # cached, as the real one
            return self.known_answers[(who.identity, url)]
        self.released.wait()
        self.asked.append((who.identity, url))
        answer = self.allowed.get((who.identity, url), False)
        self.known_answers[(who.identity, url)] = answer
        return answer


class Subscriber:
    def __init__(self, key):
        self.visitor = key
        self.urls = set()
        self.url_bytes = 0
        self.closing = False
        self.got = []

    def send(self, frame):
        # A text frame of under 126 bytes: a 2-byte header, then the JSON.
        self.got.append(json.loads(frame[2:]))


def gate_with(allowed, backlog_limit=100):
    hub = Hub(Stats())
    authorizer = HeldAuthorizer(allowed)
    hub.use_gate(Gate(authorizer, hub.stats, hub.unsubscribe, backlog_limit))
    return hub, authorizer


def item(pk, event="update", published=None):
    return Update(
        url=f"/i/{pk}/", event=event, model="a.b", pk=pk, collection="/i/",
        published=published,
    )  # fmt: skip


def test_held_updates_go_out_in_order_once_answered():
    allowed = {("k", "/i/"): True, ("k", "/i/1/"): True, ("k", "/i/2/"): True}
    hub, authorizer = gate_with(allowed)
    client = Subscriber("k")
    hub.subscribe(client, "/i/")
    for pk in (1, 2, 1):
        hub.dispatch(item(pk, published=time.time() - 0.5))
    gevent.sleep(0)
    assert client.got == []  # nothing known yet: all three held
    authorizer.released.set()
    gevent.sleep(0.01)
    assert [m["pk"] for m in client.got] == [1, 2, 1]
    # Each held update's lag counts as it goes out (Stats.delivered).
    lags = hub.stats.update_delivery_seconds
    assert lags.count == 3 and 1.5 <= lags.sum < 3
    # Each question asked once, though the connection had three updates waiting.
    assert sorted(authorizer.asked) == [("k", "/i/"), ("k", "/i/1/"), ("k", "/i/2/")]
    hub.dispatch(item(2))  # known now: sent at once, no greenlet
    assert [m["pk"] for m in client.got] == [1, 2, 1, 2]


def test_a_held_subscriber_does_not_hold_up_the_others():
    allowed = {(k, u): True for k in "ab" for u in ("/i/", "/i/1/", "/i/2/")}
    hub, authorizer = gate_with(allowed)
    known = authorizer.known_answers
    known.update({("b", None): True, **{("b", u): True for u in ("/i/", "/i/1/")}})
    waiting, known_one = Subscriber("a"), Subscriber("b")
    for client in (waiting, known_one):
        hub.subscribe(client, "/i/")
    for pk in (1, 2, 1):
        hub.dispatch(item(pk))
    gevent.sleep(0)
    assert waiting.got == []  # held, in order, until its answers come
    # Known: sent at once, except what must be asked (held behind it).
    assert [m["pk"] for m in known_one.got] == [1]
    authorizer.released.set()
    gevent.sleep(0.01)
    assert [m["pk"] for m in waiting.got] == [1, 2, 1]
    assert [m["pk"] for m in known_one.got] == [1, 2, 1]


def test_objects_and_collections_not_allowed_are_withheld_or_revoked():
    allowed = {("k", "/i/"): True, ("k", "/i/1/"): True}
    hub, authorizer = gate_with(allowed)
    authorizer.released.set()
    client = Subscriber("k")
    hub.subscribe(client, "/i/")
    hub.dispatch(item(2))  # the object is not allowed: withheld, nothing said
    hub.dispatch(item(1))
    gevent.sleep(0.01)
    assert [m["pk"] for m in client.got] == [1]
    assert hub.stats.updates_withheld == 1
    authorizer.known_answers[("k", "/i/")] = False  # the collection, revoked
    hub.dispatch(item(1))
    assert client.got[-1] == {
        "type": "error", "code": "forbidden", "message": "no longer allowed",
        "url": "/i/",
    }  # fmt: skip
    assert client.urls == set() and hub.subscriptions == 0


def test_too_many_held_updates_become_a_resync():
    hub, authorizer = gate_with({("k", "/i/"): True}, backlog_limit=3)
    client = Subscriber("k")
    hub.subscribe(client, "/i/")
    for pk in range(5):
        hub.dispatch(item(pk))
    assert client.got == [{"type": "resync"}]  # the 4th found 3 waiting
    authorizer.released.set()
    gevent.sleep(0.01)
    assert client.got == [{"type": "resync"}]  # the rest: not allowed anyway


class RefusingAuthorizer(HeldAuthorizer):
    """Asked about ``refused`` URLs, says the pool is too busy (questions.Busy)."""

    def __init__(self, allowed, refused):
        super().__init__(allowed)
        self.refused = refused
        self.askers = []

    def decide(self, who, url, mark=0, *, asker=None):
        self.askers.append(asker)
        if url in self.refused:
            raise Busy("too many authorization questions waiting")
        return super().decide(who, url, mark, asker=asker)


def test_held_updates_not_decided_for_lack_of_threads_become_a_resync():
    allowed = {("k", "/i/"): True, ("k", "/i/1/"): True}
    hub = Hub(Stats())
    authorizer = RefusingAuthorizer(allowed, refused={"/i/2/"})
    hub.use_gate(Gate(authorizer, hub.stats, hub.unsubscribe, 100))
    client = Subscriber("k")
    hub.subscribe(client, "/i/")
    for pk in (1, 2, 3):
        hub.dispatch(item(pk))
    authorizer.released.set()
    gevent.sleep(0.01)
    # 1 was decided and sent; 2 was refused: it and what waited behind, a resync.
    assert [m.get("pk", m["type"]) for m in client.got] == [1, "resync"]
    assert set(authorizer.askers) == {client}  # asked as this connection
    hub.dispatch(item(1))  # nothing held any more: sent as before
    assert client.got[-1]["pk"] == 1


def test_new_subscribers_are_grouped_in_at_the_next_update():
    allowed = {(k, u): True for k in "ab" for u in ("/i/", "/i/1/")}
    hub, authorizer = gate_with(allowed)
    authorizer.released.set()
    first, second = Subscriber("a"), Subscriber("b")
    hub.subscribe(first, "/i/")
    hub.dispatch(item(1))
    gevent.sleep(0.01)
    hub.subscribe(second, "/i/")
    hub.dispatch(item(1))
    gevent.sleep(0.01)
    hub.unsubscribe(first, "/i/")
    hub.dispatch(item(1))
    gevent.sleep(0.01)
    assert len(first.got) == 2 and len(second.got) == 2


def test_a_delete_goes_only_where_the_object_was_known_allowed():
    allowed = {("k", "/i/"): True, ("k", "/i/1/"): True}
    hub, authorizer = gate_with(allowed)
    authorizer.released.set()
    client = Subscriber("k")
    hub.subscribe(client, "/i/")
    hub.dispatch(item(1))  # asked: allowed
    hub.dispatch(item(9, "delete"))  # never asked: the object is gone
    hub.dispatch(item(1, "delete"))
    gevent.sleep(0.01)
    assert [(m["event"], m["pk"]) for m in client.got] == [
        ("update", 1), ("delete", 1)
    ]  # fmt: skip
    assert ("k", "/i/9/") not in authorizer.asked


# An anonymous visitor without a cookie.
NOBODY = Visitor.default()


@pytest.fixture
def counting_authorizer(settings):
    from pushy.gateway.permissions import Authorizer
    from tests.testapp import auth

    settings.PUSHY_SETTINGS = {
        **settings.PUSHY_SETTINGS,
        "AUTHORIZE": "tests.testapp.auth.counting",
    }
    auth.ASKED.clear()
    auth.DENIED.clear()
    authorizer = Authorizer(pool_size=2, ttl=0.4)
    yield authorizer, auth.ASKED
    authorizer.close()
    auth.DENIED.clear()


def test_one_question_asked_at_once_is_asked_once(counting_authorizer):
    authorizer, asked = counting_authorizer
    askers = [gevent.spawn(authorizer.allows, NOBODY, "/i/1/") for _ in range(20)]
    gevent.joinall(askers, raise_error=True)
    assert [g.value for g in askers] == [True] * 20
    assert asked == ["/i/1/"]


def test_a_busy_answer_is_refreshed_before_it_expires(counting_authorizer):
    authorizer, asked = counting_authorizer
    assert authorizer.allows(NOBODY, "/i/1/")
    started = time.monotonic()
    # Used in the last quarter of its 0.4 s life: asked again in the background.
    while (
        authorizer.known(NOBODY.identity(None), "/i/1/", time.monotonic()) is not None
        and len(asked) < 2
    ):
        assert time.monotonic() - started < 2, asked
        gevent.sleep(0.02)  # a poll, with a deadline
    assert asked == ["/i/1/", "/i/1/"]
    assert (
        authorizer.known(NOBODY.identity(None), "/i/1/", time.monotonic()) is True
    )  # never expired


# The warm path (Gate._fan_out_grouped with Authorizer.steady): what it skips
# must not change a verdict.


@pytest.fixture
def steady_gate(settings, monkeypatch):
    """A hub whose gate asks a real Authorizer (TTL 60 s, ``counting``), the
    URLs asked, and the clock: add seconds to ``clock[0]`` to move time on."""
    from pushy.gateway.permissions import Authorizer
    from tests.testapp import auth

    settings.PUSHY_SETTINGS = {
        **settings.PUSHY_SETTINGS,
        "AUTHORIZE": "tests.testapp.auth.counting",
    }
    auth.ASKED.clear()
    auth.DENIED.clear()
    clock = [0.0]
    real = time.monotonic
    monkeypatch.setattr(time, "monotonic", lambda: real() + clock[0])
    authorizer = Authorizer(pool_size=2, ttl=60)
    hub = Hub(Stats())
    hub.use_gate(Gate(authorizer, hub.stats, hub.unsubscribe, 100))
    yield hub, auth.ASKED, clock
    authorizer.close()
    auth.DENIED.clear()


def tokened(pk, token="t"):
    return Update(
        url=f"/i/{pk}/", event="update", model="a.b", pk=pk, collection="/i/",
        visibility=token,
    )  # fmt: skip


def told(hub, client, update, timeout=2.0):
    """Dispatch ``update``: the types of what ``client`` was sent (held ones:
    once decided)."""
    before = len(client.got)
    hub.dispatch(update)
    deadline = time.monotonic() + timeout
    while len(client.got) == before and hub.gate.backlogs:
        assert time.monotonic() < deadline
        gevent.sleep(0.005)  # the held update's question, in the pool
    return [message["type"] for message in client.got[before:]]


def test_the_warm_path_refreshes_an_answer_in_its_last_quarter(steady_gate):
    from tests.testapp import auth

    hub, asked, clock = steady_gate
    client = Subscriber(NOBODY)
    hub.subscribe(client, "/i/1/")
    assert told(hub, client, tokened(1)) == ["update"]  # asked, then sent
    assert told(hub, client, tokened(1)) == ["update"]  # steady: sent at once
    auth.DENIED.add("/i/1/")
    clock[0] += 50  # 10 s of its 60 left: asked again in the background
    assert told(hub, client, tokened(1)) == ["update"]
    deadline = time.monotonic() + 2
    while asked.count("/i/1/") < 2:
        assert time.monotonic() < deadline, asked
        gevent.sleep(0.005)  # the refresh, in the pool
    assert told(hub, client, tokened(1)) == ["error"]  # no longer allowed
    assert client.got[-1]["message"] == "no longer allowed"


def test_the_warm_path_never_uses_an_expired_collection_answer(steady_gate):
    from tests.testapp import auth

    hub, asked, clock = steady_gate
    client = Subscriber(NOBODY)
    hub.subscribe(client, "/i/")
    assert told(hub, client, tokened(1)) == ["update"]  # asks /i/ and /i/1/
    clock[0] += 30
    assert told(hub, client, tokened(2)) == ["update"]  # asks /i/2/ only
    assert told(hub, client, tokened(2)) == ["update"]  # steady again
    auth.DENIED.add("/i/")
    clock[0] += 31  # the answer for /i/ expired; the one for /i/2/ is fresh
    assert told(hub, client, tokened(2)) == ["error"]
    assert client.got[-1]["message"] == "no longer allowed"
    assert asked == ["/i/", "/i/1/", "/i/2/", "/i/"]


def test_a_new_visibility_token_is_not_decided_by_the_warm_path(steady_gate):
    from tests.testapp import auth

    hub, _, _ = steady_gate
    client = Subscriber(NOBODY)
    hub.subscribe(client, "/i/")
    assert told(hub, client, tokened(1)) == ["update"]
    assert told(hub, client, tokened(1)) == ["update"]
    auth.DENIED.add("/i/1/")  # the save that changes the token hides it
    assert told(hub, client, tokened(1, token="u")) == ["hidden"]


def test_an_answer_that_changed_is_followed_at_once(steady_gate):
    from tests.testapp import auth

    hub, _, _ = steady_gate
    client = Subscriber(NOBODY)
    hub.subscribe(client, "/i/")
    assert told(hub, client, tokened(1)) == ["update"]
    assert told(hub, client, tokened(1)) == ["update"]  # steady
    auth.DENIED.add("/i/")
    # Asked again (as at a later mark of its URL), long before its refresh.
    authorizer = hub.gate.authorizer
    assert (
        gevent.spawn(authorizer.decide, authorizer.who(NOBODY), "/i/", 99).get()
        is False
    )
    assert told(hub, client, tokened(1)) == ["error"]


def test_a_refresh_waits_until_updates_stop_being_fanned_out(steady_gate, monkeypatch):
    from pushy.gateway import refreshes

    monkeypatch.setattr(refreshes, "QUIET", 0.3)
    hub, asked, clock = steady_gate
    client = Subscriber(NOBODY)
    hub.subscribe(client, "/i/1/")
    assert told(hub, client, tokened(1)) == ["update"]
    clock[0] += 50  # in its last quarter: due for a refresh
    started = time.monotonic()
    for _ in range(3):  # a burst: each fan-out holds the refresh off again
        assert told(hub, client, tokened(1)) == ["update"]
        gevent.sleep(0.1)
    while asked.count("/i/1/") < 2:
        assert time.monotonic() - started < 3, asked
        gevent.sleep(0.005)  # the refresh, in the pool
    assert time.monotonic() - started >= 0.2 + 0.3
