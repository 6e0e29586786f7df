"""pushy.js's own logic in Chromium, with a scripted stand-in for WebSocket.

These sit on top of the end-to-end tests (test_live_page.py, against a real
gateway): a fake socket makes the timing rules checkable quickly and exactly
(backoff bounds, heartbeat, resubscription, callback isolation).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import pushy

pytestmark = [pytest.mark.browser, pytest.mark.timeout(60)]

PUSHY_JS = Path(pushy.__file__).parent / "static" / "pushy" / "js" / "pushy.js"

# A WebSocket the test drives: open(), receive(message), drop(code).
FAKE_WEBSOCKET = """
window.sockets = [];
class FakeSocket {
  constructor(url) {
    this.url = url; this.readyState = 0; this.sent = []; this.closedWith = null;
    window.sockets.push(this);
  }
  send(data) {
    if (this.readyState !== 1) { throw new Error("send on a socket not open"); }
    this.sent.push(JSON.parse(data));
  }
  close(code) { this.readyState = 3; this.closedWith = code; }
  open() { this.readyState = 1; this.onopen && this.onopen({}); }
  receive(message) {
    this.onmessage && this.onmessage({data: JSON.stringify(message)});
  }
  drop(code) {
    this.readyState = 3;
    this.onclose && this.onclose({code: code || 1006, reason: ""});
  }
}
Object.assign(FakeSocket, {CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3});
window.WebSocket = FakeSocket;
window.last = () => window.sockets[window.sockets.length - 1];
window.updateOf = (url) => (
  {type: "update", url, event: "update", model: "m.m", pk: 1}
);
"""


@pytest.fixture
def app(page):
    """A page with pushy.js and ``window.app``, a PushyApp not yet started."""
    page.set_content("<!doctype html><title>pushy.js</title>")
    page.add_script_tag(content=FAKE_WEBSOCKET)
    page.add_script_tag(path=str(PUSHY_JS))
    page.evaluate(
        """() => {
        window.app = new PushyApp;
        app.socket_url = "https://gateway.example/pushy";
        app.reconnect_base = 0.01;
        // The quiet-reconnect rules have their own tests below; the others
        // check delivery as it happens.
        app.coalesce = false; app.resync_window = 0;
        window.got = [];
        window.record = (name) => (update) => got.push([name, update.type, update.url]);
        window.a = record("a"); window.b = record("b");
    }"""
    )
    return page


def test_subscribes_before_open_and_delivers_to_each_callback_once(app):
    app.evaluate(
        """() => {
        app.subscribe("/api/shot/1/", a);
        app.subscribe("/api/shot/1/", b);
        app.subscribe("/api/shot/", a);
        app.init();
        last().open();
    }"""
    )
    assert app.evaluate("last().url") == "wss://gateway.example/pushy/ws"
    # version null: "I speak versions, none seen yet" (docs/protocol.md).
    assert app.evaluate("last().sent") == [
        {"action": "subscribe", "url": "/api/shot/1/", "version": None},
        {"action": "subscribe", "url": "/api/shot/", "version": None},
    ]
    app.evaluate(
        """last().receive({type: "update", url: "/api/shot/1/", event: "update",
            model: "photosession.shot", pk: 1, collection: "/api/shot/"})"""
    )
    # a is subscribed to both the object and its collection: called once.
    assert app.evaluate("got") == [
        ["a", "update", "/api/shot/1/"],
        ["b", "update", "/api/shot/1/"],
    ]


def test_unsubscribe_stops_callbacks_and_tells_the_server_after_the_last(app):
    app.evaluate(
        """() => {
        app.init(); last().open();
        app.subscribe("/x/1/", a); app.subscribe("/x/1/", b);
        app.unsubscribe("/x/1/", a);
        last().receive(updateOf("/x/1/"));
    }"""
    )
    assert app.evaluate("got") == [["b", "update", "/x/1/"]]
    assert app.evaluate("last().sent.map(m => m.action)") == ["subscribe"]
    app.evaluate(
        """() => {
        app.unsubscribe("/x/1/", b);
        last().receive(updateOf("/x/1/"));
    }"""
    )
    assert app.evaluate("got.length") == 1
    assert app.evaluate("last().sent.at(-1)") == {
        "action": "unsubscribe",
        "url": "/x/1/",
    }


def test_backoff_is_full_jitter_exponential_and_capped(app):
    delays = app.evaluate(
        """() => {
        app.reconnect_base = 0.5; app.reconnect_cap = 4;
        Math.random = () => 0.999999;
        const highest = [1, 2, 3, 4, 5, 6].map(() => app._nextDelay());
        Math.random = () => 0;
        return [highest, app._nextDelay()];
    }"""
    )
    highest, lowest = delays
    assert [round(d, 3) for d in highest] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert lowest == 0


def test_reconnects_resubscribes_and_resyncs(app):
    app.evaluate(
        """() => {
        window.states = [];
        app.on_state(s => states.push(s));
        app.subscribe("/x/1/", a); app.subscribe("/x/", b);
        app.init(); last().open();
        last().receive({type: "subscribed", url: "/x/1/"});
        last().drop(1001);
    }"""
    )
    app.wait_for_function("sockets.length === 2")
    assert app.evaluate("got") == [], "no resync before the socket is back"
    app.evaluate(
        """() => {
        last().open();
        last().receive({type: "subscribed", url: "/x/1/"});
        last().receive({type: "subscribed", url: "/x/"});
    }"""
    )
    assert app.evaluate("last().sent.map(m => m.url)") == ["/x/1/", "/x/"]
    assert app.evaluate("got") == [["a", "resync", "/x/1/"], ["b", "resync", "/x/"]]
    assert app.evaluate("states") == [
        "closed",
        "connecting",
        "open",
        "reconnecting",
        "open",
    ]
    app.evaluate("""last().receive({type: "resync"})""")
    assert app.evaluate("got.slice(2)") == [
        ["a", "resync", "/x/1/"],
        ["b", "resync", "/x/"],
    ]


def test_backoff_resets_after_a_stable_connection(app):
    app.evaluate(
        """() => {
        app.stable_after = 0.05;
        app.init(); last().drop();
    }"""
    )
    app.wait_for_function("sockets.length === 2")
    assert app.evaluate("app._failures") == 1
    app.evaluate("last().open()")
    app.wait_for_function("app._failures === 0")


def test_a_silent_connection_is_dropped_and_replaced(app):
    app.evaluate(
        """() => {
        app.ping_interval = 0.05; app.pong_timeout = 0.05;
        app.init(); last().open();
    }"""
    )
    app.wait_for_function("sockets.length === 2")
    assert app.evaluate("sockets[0].sent") == [{"action": "ping"}]
    assert app.evaluate("sockets[0].closedWith") == 1000


def test_an_answered_ping_keeps_the_connection(app):
    app.evaluate(
        """() => {
        app.ping_interval = 0.05; app.pong_timeout = 0.05;
        app.init(); last().open();
        const socket = last();
        const send = socket.send.bind(socket);
        socket.send = (data) => {
            send(data);
            setTimeout(() => socket.receive({type: "pong"}), 10);
        };
    }"""
    )
    app.wait_for_function("sockets[0].sent.length >= 4")
    assert app.evaluate("sockets.length") == 1
    assert app.evaluate("app.state") == "open"


def test_a_failing_callback_does_not_stop_the_others(app):
    with app.expect_event("pageerror") as error:
        app.evaluate(
            """() => {
            app.init(); last().open();
            app.subscribe("/x/1/", () => { throw new Error("page bug"); });
            app.subscribe("/x/1/", a);
            last().receive({type: "update", url: "/x/1/", event: "delete",
                            model: "m.m", pk: 1});
        }"""
        )
    assert "page bug" in str(error.value)
    assert app.evaluate("got") == [["a", "update", "/x/1/"]]


def test_logs_only_in_debug_mode(app):
    scenario = """(debug) => {
        app.debug = debug;
        app.subscribe("/x/1/", a);
        app.init(); last().open();
        last().receive(updateOf("/x/1/"));
        last().drop();
        app.close();
    }"""
    app.evaluate(scenario, False)
    assert app.log.console == []
    app.evaluate(scenario, True)
    assert any(line.startswith("pushy:") for line in app.log.console)


def test_close_stops_reconnecting(app):
    app.evaluate("() => { app.init(); last().open(); app.close(); }")
    app.evaluate("new Promise(r => setTimeout(r, 100))")
    assert app.evaluate("sockets.length") == 1
    assert app.evaluate("app.state") == "closed"


def test_a_refused_subscription_reaches_on_error_the_callback_and_the_console(app):
    app.evaluate(
        """() => {
        window.errors = []; window.events = [];
        app.on_error(e => errors.push([e.code, e.url]));
        window.addEventListener("pushy:error", e => events.push(e.detail.code));
        app.subscribe("/x/1/", a);
        app.init(); last().open();
        last().receive({type: "error", code: "forbidden", url: "/x/1/",
                        message: "not allowed"});
    }"""
    )
    assert app.evaluate("errors") == [["forbidden", "/x/1/"]]
    assert app.evaluate("events") == ["forbidden"]
    assert app.evaluate("got") == [["a", "error", "/x/1/"]]
    assert any("not allowed" in line for line in app.log.console)


def test_repeated_refusals_are_reported_and_back_off_near_the_cap(app):
    app.evaluate(
        """() => {
        window.errors = [];
        const stop = app.on_error(e => errors.push([e.code, e.attempts]));
        app.reconnect_base = 0.001; app.reconnect_cap = 4;
        app.init();
    }"""
    )
    for attempt in range(1, 4):
        app.wait_for_function(f"sockets.length === {attempt}")
        app.evaluate("last().drop(1006)")  # closed before it ever opened
    assert app.evaluate("errors") == [["refused", 1], ["refused", 2], ["refused", 3]]
    # The console heard of the first refusal only, not of each.
    warnings = [line for line in app.log.console if "cannot connect" in line]
    assert len(warnings) == 1 and "attempt" in warnings[0]
    delays = app.evaluate(
        """() => {
        app.close();
        Math.random = () => 0;
        const low = app._nextDelay();
        Math.random = () => 0.999999;
        return [low, app._nextDelay()];
    }"""
    )
    assert delays[0] == 2 and 3.99 < delays[1] <= 4


def test_an_open_connection_resets_the_refusal_count(app):
    app.evaluate(
        """() => {
        window.errors = [];
        app.on_error(e => errors.push(e.code));
        app.reconnect_base = 0.001;
        app.init(); last().drop(1006);
    }"""
    )
    app.wait_for_function("sockets.length === 2")
    app.evaluate("last().open()")
    assert app.evaluate("app._refused") == 0
    app.evaluate("last().drop(1008)")  # the gateway closed it (policy)
    assert app.evaluate("errors") == ["refused", "closed"]


def test_on_error_returns_a_function_that_stops_it(app):
    app.evaluate(
        """() => {
        window.errors = [];
        const stop = app.on_error(e => errors.push(e.code));
        app.init(); last().open();
        last().receive({type: "error", code: "invalid", message: "x"});
        stop();
        last().receive({type: "error", code: "invalid", message: "y"});
    }"""
    )
    assert app.evaluate("errors") == ["invalid"]


NEXT_FRAME = "new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)))"


def test_updates_of_one_url_within_a_frame_reach_a_callback_once_the_last(app):
    app.evaluate(
        """() => {
        app.coalesce = true;
        window.every = [];
        app.subscribe("/x/1/", a);
        app.subscribe("/x/", b);
        app.subscribe("/x/1/", (u) => every.push(u.data.n), {coalesce: false});
        app.init(); last().open();
        const update = (url, n) => ({type: "update", url, event: "update",
            model: "m.m", pk: 1, collection: "/x/", data: {n}});
        window.update = update;
        for (const n of [1, 2, 3]) { last().receive(update("/x/1/", n)); }
        last().receive(update("/x/2/", 4));
        window.before = got.length;
    }"""
    )
    # The opted-out callback had each update at once, the others nothing yet.
    assert app.evaluate("every") == [1, 2, 3]
    assert app.evaluate("before") == 0
    app.evaluate(NEXT_FRAME)
    assert app.evaluate("got") == [
        ["a", "update", "/x/1/"],
        ["b", "update", "/x/1/"],
        ["b", "update", "/x/2/"],
    ]
    # a's update is the last of the three.
    app.evaluate(
        """() => { got.length = 0;
        app.unsubscribe("/x/1/", a);
        app.subscribe("/x/1/", (u) => got.push(["a", u.data.n]));
        last().receive(update("/x/1/", 5)); last().receive(update("/x/1/", 6));
    }"""
    )
    app.evaluate(NEXT_FRAME)
    assert app.evaluate("got") == [["a", 6], ["b", "update", "/x/1/"]]
    # The next frame's updates are delivered again: nothing is held back.
    app.evaluate("() => { got.length = 0; last().receive(update('/x/1/', 7)); }")
    app.evaluate(NEXT_FRAME)
    assert app.evaluate("got") == [["a", 7], ["b", "update", "/x/1/"]]


def test_a_callback_unsubscribed_before_the_frame_is_not_called(app):
    app.evaluate(
        """() => {
        app.coalesce = true;
        app.subscribe("/x/1/", a);
        app.init(); last().open();
        last().receive(updateOf("/x/1/"));
        app.unsubscribe("/x/1/", a);
    }"""
    )
    app.evaluate(NEXT_FRAME)
    assert app.evaluate("got") == []


def test_coalescing_in_a_hidden_tab_still_delivers(app):
    app.evaluate(
        """() => {
        Object.defineProperty(document, "visibilityState", {value: "hidden"});
        window.requestAnimationFrame = () => { throw new Error("no frames"); };
        app.coalesce = true;
        app.subscribe("/x/1/", a);
        app.init(); last().open();
        last().receive(updateOf("/x/1/")); last().receive(updateOf("/x/1/"));
    }"""
    )
    app.wait_for_function("got.length === 1")
    app.evaluate("new Promise(r => setTimeout(r, 50))")
    assert app.evaluate("got") == [["a", "update", "/x/1/"]]


def test_resyncs_after_a_reconnect_are_spread_over_the_jittered_window(app):
    app.evaluate(
        """() => {
        app.resync_window = 0.4;
        window.when = [];
        const urls = Array.from({length: 20}, (_, i) => "/x/" + i + "/");
        for (const url of urls) {
            app.subscribe(url, () => when.push([url, performance.now()]));
        }
        app.init(); last().open();
        last().drop(1001);
    }"""
    )
    app.wait_for_function("sockets.length === 2")
    started = app.evaluate(
        """() => {
        // Descending random draws: the later a URL subscribed, the earlier it
        // resyncs, which no delivery in subscription order could give.
        let draw = 1;
        Math.random = () => (draw -= 0.05);
        last().open();
        for (const m of last().sent) {
            last().receive({type: "subscribed", url: m.url});
        }
        window.started = performance.now();
        return when.length;
    }"""
    )
    assert started == 0, "no resync is delivered at once"
    app.wait_for_function("when.length === 20")
    order = app.evaluate("when.map(w => w[0])")
    assert order == [f"/x/{i}/" for i in reversed(range(20))]
    offsets = app.evaluate("when.map(w => (w[1] - started) / 1000)")
    assert max(offsets) < 0.4 + 0.2
    assert max(offsets) - min(offsets) > 0.25, offsets


def test_a_gateway_resync_is_spread_too_and_close_cancels_it(app):
    app.evaluate(
        """() => {
        app.resync_window = 0.2;
        Math.random = () => 0.5;  // 100 ms: none may come before the next look
        app.subscribe("/x/1/", a); app.subscribe("/x/2/", b);
        app.init(); last().open();
        last().receive({type: "resync"});
        last().receive({type: "resync"});  // one pending resync per URL
    }"""
    )
    assert app.evaluate("got") == []
    app.wait_for_function("got.length === 2")
    app.evaluate("new Promise(r => setTimeout(r, 250))")
    assert sorted(app.evaluate("got")) == [
        ["a", "resync", "/x/1/"],
        ["b", "resync", "/x/2/"],
    ]
    app.evaluate(
        """() => { got.length = 0; last().receive({type: "resync"}); app.close(); }"""
    )
    app.evaluate("new Promise(r => setTimeout(r, 250))")
    assert app.evaluate("got") == []


def test_versions_are_remembered_and_sent_when_subscribing_again(app):
    app.evaluate(
        """() => {
        for (const url of ["/x/1/", "/x/", "/x/2/", "/x/3/", "/x/4/"]) {
            app.subscribe(url, record(url));
        }
        app.init(); last().open();
        const s = last();
        s.receive({type: "subscribed", url: "/x/1/", version: 10});
        s.receive({type: "subscribed", url: "/x/", version: 10});
        s.receive({type: "subscribed", url: "/x/2/", version: 10});
        s.receive({type: "subscribed", url: "/x/3/"});  // a v1 gateway: none
        // An update moves its object's and its collection's versions.
        s.receive({type: "update", url: "/x/1/", event: "update", model: "m.m",
                   pk: 1, collection: "/x/", version: 15});
        s.receive({type: "resync", url: "/x/2/", version: 12});
        s.receive({type: "subscribed", url: "/x/2/", version: 11});  // never back
        s.drop(1006);
    }"""
    )
    # The per-URL resync reached /x/2/'s callback only.
    assert app.evaluate("got") == [
        ["/x/1/", "update", "/x/1/"],
        ["/x/", "update", "/x/1/"],
        ["/x/2/", "resync", "/x/2/"],
    ]
    app.wait_for_function("sockets.length === 2")
    app.evaluate("() => { got.length = 0; last().open(); }")
    assert app.evaluate("last().sent") == [
        {"action": "subscribe", "url": "/x/1/", "version": 15},
        {"action": "subscribe", "url": "/x/", "version": 15},
        {"action": "subscribe", "url": "/x/2/", "version": 12},
        {"action": "subscribe", "url": "/x/3/", "version": None},
        {"action": "subscribe", "url": "/x/4/", "version": None},
    ]
    app.evaluate(
        """() => {
        const s = last();
        s.receive({type: "subscribed", url: "/x/1/", version: 20});
        s.receive({type: "subscribed", url: "/x/", version: 20});
        s.receive({type: "resync", url: "/x/", version: 20});  // it changed
        s.receive({type: "subscribed", url: "/x/2/", version: 20});
        s.receive({type: "subscribed", url: "/x/3/", version: 20});
        s.receive({type: "subscribed", url: "/x/4/"});
    }"""
    )
    # Compared by the gateway: /x/1/ and /x/2/ unchanged, /x/ changed. No version
    # was known for /x/3/, and /x/4/'s gateway compared nothing: both resync.
    assert sorted(app.evaluate("got")) == [
        ["/x/", "resync", "/x/"],
        ["/x/3/", "resync", "/x/3/"],
        ["/x/4/", "resync", "/x/4/"],
    ]
    app.evaluate("() => { app.unsubscribe('/x/1/'); app.subscribe('/x/1/', a); }")
    assert app.evaluate("last().sent.at(-1)") == {
        "action": "subscribe",
        "url": "/x/1/",
        "version": None,
    }


def test_a_subscribe_refused_busy_is_asked_again_after_a_backoff(app):
    app.evaluate(
        """() => {
        app.reconnect_cap = 0.05;  // the backoff's cap, here 50 ms
        app.subscribe("/x/1/", a); app.subscribe("/x/2/", b);
        app.init(); last().open();
        last().receive({type: "error", code: "busy", url: "/x/1/",
                        message: "too many authorization questions waiting"});
        last().receive({type: "error", code: "forbidden", url: "/x/2/",
                        message: "not allowed"});
    }"""
    )
    app.wait_for_function("last().sent.length === 3", timeout=5_000)
    app.wait_for_timeout(200)  # forbidden is final: nothing more comes
    assert app.evaluate("last().sent.map(m => m.url)") == ["/x/1/", "/x/2/", "/x/1/"]
    # Still wanted only: unsubscribed meanwhile, it is not asked again.
    app.evaluate(
        """() => {
        last().receive({type: "error", code: "timeout", url: "/x/1/",
                        message: "the authorization took too long"});
        app.unsubscribe("/x/1/", a);
    }"""
    )
    app.wait_for_timeout(200)
    assert app.evaluate("last().sent.map(m => m.action)") == [
        "subscribe",
        "subscribe",
        "subscribe",
        "unsubscribe",
    ]
