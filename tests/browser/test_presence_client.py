"""pushy.js's presence in Chromium, with the scripted WebSocket of
test_client_logic.py: joins, re-joins after a reconnect, leaves, the
pushy:presence event and data-pushy-presence elements."""

from __future__ import annotations

import pytest

from tests.browser.test_client_logic import app  # noqa: F401 -- the fixture

pytestmark = [pytest.mark.browser, pytest.mark.timeout(60)]

URL = "/admin/shots/shot/3/change/"
# What a gateway answers a join with (docs/protocol.md, "Presence").
JOINED = {"type": "joined", "url": URL, "you": "me"}
PRESENCE = {
    "type": "presence",
    "url": URL,
    "people": [
        {"id": "me", "name": "alice", "since": 1},
        {"id": "b", "name": "bob", "since": 2},
    ],
    "count": 3,
    "anonymous": 1,
}


def test_presence_joins_calls_back_and_fires_an_event(app):  # noqa: F811
    app.evaluate(
        """(url) => {
        window.heard = []; window.events = [];
        window.addEventListener("pushy:presence", (e) => events.push(e.detail.count));
        window.stop = app.presence(url, (people, count, detail) =>
            heard.push([people.map(p => p.name), count, detail.others.map(p => p.name),
                        detail.you]));
        app.init(); last().open();
    }""",
        URL,
    )
    assert app.evaluate("last().sent") == [
        {"action": "join", "url": URL, "object": True}
    ]
    app.evaluate(
        f"""() => {{
        last().receive({{type: "subscribed", url: "{URL}"}});
        last().receive({JOINED});
        last().receive({PRESENCE});
    }}"""
    )
    assert app.evaluate("heard") == [[["alice", "bob"], 3, ["bob"], "me"]]
    assert app.evaluate("events") == [3]
    # A second callback hears the list known so far at once (after this task).
    app.evaluate("(url) => { app.presence(url, (p, n) => heard.push(n)); }", URL)
    app.wait_for_function("heard.length === 2")
    assert app.evaluate("heard[1]") == 3


def test_presence_is_joined_again_after_a_reconnect(app):  # noqa: F811
    app.evaluate(
        """(url) => {
        app.subscribe("/api/shot/", () => {});
        app.presence(url, () => {});
        app.init(); last().open(); last().drop(1006);
    }""",
        URL,
    )
    app.wait_for_function("sockets.length === 2")
    app.evaluate("last().open()")
    assert app.evaluate("last().sent.map(m => [m.action, m.url])") == [
        ["subscribe", "/api/shot/"],
        ["join", URL],
    ]


def test_stopping_leaves_or_unsubscribes_and_unsubscribe_keeps_presence(
    app,  # noqa: F811
):
    app.evaluate(
        """() => {
        app.init(); last().open();
        window.cb = () => {};
        window.stopA = app.presence("/a/", () => {});
        app.subscribe("/b/", cb);
        window.stopB = app.presence("/b/", () => {});
        app.unsubscribe("/b/", cb);  // presence still needs the subscription
        stopA();  // joined only: the join's subscription ends
        app.subscribe("/b/", cb);
        stopB();  // subscribed too: only leave
        stopB();  // twice: nothing more
    }"""
    )
    assert app.evaluate("last().sent.map(m => [m.action, m.url])") == [
        ["join", "/a/"],
        ["subscribe", "/b/"],
        ["join", "/b/"],
        ["unsubscribe", "/a/"],
        ["subscribe", "/b/"],
        ["leave", "/b/"],
    ]


def test_a_presence_element_shows_the_others_unless_its_event_is_cancelled(
    app,  # noqa: F811
):
    app.evaluate(
        """(url) => {
        document.body.innerHTML =
            '<p id="shown" data-pushy-presence="' + url + '"></p>' +
            '<p id="own" data-pushy-presence="' + url + '"></p>';
        document.getElementById("own").addEventListener("pushy:presence", (e) => {
            e.preventDefault(); e.target.dataset.mine = e.detail.count;
        });
        app.init(); last().open();
    }""",
        URL,
    )
    assert app.evaluate("last().sent") == [
        {"action": "join", "url": URL, "object": True}
    ]
    app.evaluate(f"() => {{ last().receive({JOINED}); last().receive({PRESENCE}); }}")
    # bob, and one anonymous visitor: the others of this page's person.
    assert app.evaluate("document.getElementById('shown').textContent") == "bob, +1"
    assert app.evaluate("document.getElementById('shown').dataset.pushyCount") == "2"
    assert app.evaluate("document.getElementById('own').textContent") == ""
    assert app.evaluate("document.getElementById('own').dataset.mine") == "3"
    # An element added later hears the list known, without another join.
    app.evaluate(
        """(url) => document.body.insertAdjacentHTML("beforeend",
            '<p id="late" data-pushy-presence="' + url + '"></p>')""",
        URL,
    )
    app.wait_for_function("document.getElementById('late')?.textContent === 'bob, +1'")
    assert app.evaluate("last().sent.length") == 1
    # The last element gone: the URL is left after release_delay.
    app.evaluate("app.release_delay = 0; document.body.innerHTML = ''")
    app.wait_for_function("last().sent.length === 2")
    assert app.evaluate("last().sent[1]") == {"action": "unsubscribe", "url": URL}
