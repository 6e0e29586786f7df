"""Versions end to end (issue 13): pushy.js in Chromium with 1,000 subscriptions,
a real gateway restarted while 10 of the objects change; exactly those 10 URLs'
callbacks get a resync, or, with the update history on (issue 24 item 5), the
updates they missed and no resync."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import pushy
from pushy import publisher
from tests.gateway.clients import shot_update
from tests.support.gateway import Gateway

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(120)]

PUSHY_JS = Path(pushy.__file__).parent / "static" / "pushy" / "js" / "pushy.js"
COUNT = 1000
CHANGED = [7 + 100 * i for i in range(10)]


def wait_for(page, condition, what: str, timeout: float = 30) -> None:
    """Poll with a deadline; Playwright delivers frame events while it waits."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        page.wait_for_timeout(20)


@pytest.mark.parametrize("history", [0, 1000], ids=["history-off", "history-on"])
def test_a_gateway_restart_resyncs_exactly_the_urls_that_changed(
    page, pushy_redis, history
):
    # Every subscription is allowed, so the test is about versions alone.
    gateway = Gateway(
        pushy_redis.url,
        pushy_settings={
            "AUTHORIZE": "pushy.authorization.allow_all",
            "HISTORY_LENGTH": history,
        },
    )
    gateway.start()
    frames: list[list[dict]] = []  # per socket, what it received

    def watch(socket) -> None:
        received: list[dict] = []
        frames.append(received)
        socket.on("framereceived", lambda payload: received.append(json.loads(payload)))

    def subscribed(socket_index: int) -> int:
        if len(frames) <= socket_index:
            return 0
        return sum(1 for f in frames[socket_index] if f.get("type") == "subscribed")

    try:
        page.on("websocket", watch)
        # A page served from the loopback address (the gateway's own /health):
        # Chromium lets such a page, and only such, open a loopback WebSocket.
        page.goto(gateway.url + "health")
        page.add_script_tag(path=str(PUSHY_JS))
        page.evaluate(
            """([socketUrl, count]) => {
            window.app = new PushyApp;
            app.socket_url = socketUrl;
            app.reconnect_base = 0.05; app.reconnect_cap = 0.5;
            app.resync_window = 0.3;
            window.resyncs = [];
            window.updates = [];
            for (let pk = 1; pk <= count; pk++) {
                app.subscribe("/api/shot/" + pk + "/", (m) => {
                    if (m.type === "resync") { resyncs.push(m.url); }
                    if (m.type === "update") { updates.push([m.url, m.version]); }
                });
            }
            app.init();
        }""",
            [gateway.url, COUNT],
        )
        wait_for(page, lambda: subscribed(0) == COUNT, "1,000 subscribed")
        assert page.evaluate("app._versions.size") == COUNT

        gateway.stop()
        page.wait_for_function("app.state === 'reconnecting'")
        publisher.publish([shot_update(pk) for pk in CHANGED])
        publisher.publish([shot_update(pk) for pk in CHANGED[:3]])  # twice: still one
        gateway.start()

        wait_for(page, lambda: subscribed(len(frames) - 1) == COUNT, "1,000 again")
        page.wait_for_function("app._pendingResyncs.size === 0 && app.state === 'open'")
        resynced = page.evaluate("resyncs")
        last = frames[-1]
        assert {"type": "resync"} not in last
        changed = sorted(f"/api/shot/{pk}/" for pk in CHANGED)
        if not history:
            assert sorted(resynced) == changed
            # The gateway said which: one resync frame per changed URL.
            assert sum(1 for f in last if f.get("type") == "resync") == len(CHANGED)
            return
        # Sent what they missed instead: every update once, each URL's in order;
        # pushy.js calls back with the newest of each (it coalesces per frame)
        # and holds that version for its next subscribe.
        assert resynced == []
        sent = [(f["url"], f["version"]) for f in last if f.get("type") == "update"]
        twice = [f"/api/shot/{pk}/" for pk in CHANGED[:3]]
        assert sorted(url for url, _ in sent) == sorted(changed + twice)
        page.wait_for_function(
            f"new Set(updates.map(u => u[0])).size >= {len(CHANGED)}"
        )
        called = dict(page.evaluate("updates"))
        for url in changed:
            versions = [v for u, v in sent if u == url]
            assert versions == sorted(set(versions))
            assert called[url] == versions[-1]
            assert page.evaluate(f"app._versions.get('{url}')") >= versions[-1]
        assert page.log.errors == []
    finally:
        gateway.stop()
