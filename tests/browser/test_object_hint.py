"""pushy.js says a URL is one object (``"object": true``, docs/protocol.md)
when asked to, in Chromium: the frames it sends, to a scripted WebSocket
(test_client_logic.FAKE_WEBSOCKET). One subscription per URL: the wider of
its callbacks' wins. The gateway's side is tests/test_cluster_object_hint.py."""

from __future__ import annotations

import pytest

from tests.browser.test_client_logic import app  # noqa: F401 (a fixture)
from tests.browser.test_declarative import (
    site,  # noqa: F401 (a fixture)
    wait_for,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(60)]

FRAMES = """() => last().sent.filter((m) => m.action !== "ping")"""


def frames(page) -> list[dict]:
    return page.evaluate(FRAMES)


def test_subscribe_says_object_and_the_wider_callback_wins(app):  # noqa: F811
    page = app
    page.evaluate(
        """() => {
        window.noop = () => {}; window.other = () => {};
        app.init(); last().open();
        app.subscribe("/x/1/", noop, {object: true});
        app.subscribe("/x/1/", noop, {object: true});
        app.subscribe("/x/2/", noop);
        app.subscribe("/x/1/", other);  // wider: subscribed again, without
        app.subscribe("/x/1/", noop, {object: true});
    }"""
    )
    assert frames(page) == [
        {"action": "subscribe", "url": "/x/1/", "version": None, "object": True},
        {"action": "subscribe", "url": "/x/2/", "version": None},
        {"action": "subscribe", "url": "/x/1/", "version": None},
    ]
    # After a reconnect, as subscribed now: /x/1/ has an unhinted callback.
    page.evaluate("() => { last().drop(); }")
    wait_for(page, "sockets.length === 2")
    page.evaluate("() => { last().open(); app.unsubscribe('/x/1/', other); }")
    page.evaluate("() => { last().drop(); }")
    wait_for(page, "sockets.length === 3")
    page.evaluate("() => last().open()")
    assert frames(page) == [
        {"action": "subscribe", "url": "/x/1/", "version": None, "object": True},
        {"action": "subscribe", "url": "/x/2/", "version": None},
    ]


def test_a_url_with_a_query_string_is_no_object(app):  # noqa: F811
    page = app
    message = page.evaluate(
        """() => {
        app.init(); last().open();
        try { app.subscribe("/x/?s=1", () => {}, {object: true}); }
        catch (e) { return e.message; }
    }"""
    )
    assert "query string" in message
    assert frames(page) == []


def test_a_join_asks_for_an_objects_subscription(app):  # noqa: F811
    page = app
    page.evaluate(
        """() => {
        app.init(); last().open();
        app.presence("/admin/x/1/change/", () => {});
        app.presence("/page/?q=1", () => {});
    }"""
    )
    assert frames(page) == [
        {"action": "join", "url": "/admin/x/1/change/", "object": True},
        {"action": "join", "url": "/page/?q=1"},
    ]


def test_elements_with_data_pushy_object(site):  # noqa: F811
    site.open(
        '<p id="a" data-pushy-url="/x/1/" data-pushy-object></p>'
        '<p id="b" data-pushy-url="/x/?s=1" data-pushy-object></p>'
    )
    page = site.page
    # (version 0: an element without data-pushy-version, as before.)
    assert frames(page) == [
        {"action": "subscribe", "url": "/x/1/", "version": 0, "object": True}
    ]
    assert page.evaluate("errors")[0][0] == "invalid"  # /x/?s=1 not subscribed
    # An element of the same URL without the attribute widens the subscription.
    page.evaluate(
        """() => document.body.insertAdjacentHTML("beforeend",
        '<p id="c" data-pushy-url="/x/1/"></p><p id="d" data-pushy-url="/x/1/"'
        + ' data-pushy-object></p>')"""
    )
    wait_for(page, "last().sent.length === 2")
    assert frames(page)[1] == {"action": "subscribe", "url": "/x/1/", "version": 0}
