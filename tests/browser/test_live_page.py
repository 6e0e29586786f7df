"""End to end: the demo page in Chromium, the demo site served by runserver, a
real ``runpushy`` gateway and Redis, and saves made by other processes.

The site, its database and the gateway (on the port the site's SOCKET_SERVER
names) live for this module, since each takes seconds to start; each test gets
its own browser page and changes only objects no other test looks at.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.site import SampleSite
from tests.support.gateway import Gateway
from tests.support.servers import free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "demo.png"
SHOT = "from sample_site.photosession.models import Shot; "

# Collects Content-Security-Policy violations before any page script runs.
CSP_WATCH = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.cspViolations.push(e.violatedDirective + " " + e.blockedURI);
});
"""


@pytest.fixture(scope="module")
def gateway_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def site(redis_server, gateway_port):
    running = SampleSite(redis_server.url, f"http://127.0.0.1:{gateway_port}/")
    try:
        yield running.start()
    finally:
        running.stop()


@pytest.fixture(scope="module")
def module_gateway(site, redis_server, gateway_port):
    """runpushy with the demo site's settings, so origins and models are its own."""
    running = Gateway(redis_server.url, port=gateway_port, env=site.env)
    with running:
        yield running


@pytest.fixture
def gateway(module_gateway):
    """The module's gateway, started again if a test left it dead."""
    if module_gateway.proc is None or module_gateway.proc.poll() is not None:
        module_gateway.stop()
        module_gateway.start()
    return module_gateway


class LivePage:
    """The demo page in a browser tab, with the WebSocket frames it received."""

    def __init__(self, page, site: SampleSite) -> None:
        self.page = page
        self.site = site
        self.frames: list[dict] = []
        page.on("websocket", self._watch)
        page.add_init_script(CSP_WATCH)
        expect.set_options(timeout=10_000)

    def _watch(self, socket) -> None:
        socket.on(
            "framereceived", lambda payload: self.frames.append(json.loads(payload))
        )

    def open(self) -> LivePage:
        self.response = self.page.goto(self.site.url)
        self.wait_for_frames("subscribed", 2)
        return self

    def wait_for_frames(self, kind: str, count: int, timeout: float = 10) -> None:
        """Poll, with a deadline, until ``count`` frames of type ``kind`` came."""
        deadline = time.monotonic() + timeout
        while self.count(kind) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count} {kind!r} frames expected: {self.frames}")
            self.page.wait_for_timeout(20)

    def count(self, kind: str) -> int:
        return sum(1 for frame in self.frames if frame.get("type") == kind)

    def status(self):
        return self.page.locator("#pushy-status")

    def shot(self, pk: int):
        return self.page.locator(f"#shot-{pk}")

    def assert_clean(self) -> None:
        """No CSP violation and no uncaught error on the page."""
        assert self.page.evaluate("window.cspViolations") == []
        assert self.page.log.errors == []


@pytest.fixture
def live(page, site, gateway):
    live_page = LivePage(page, site).open()
    yield live_page
    live_page.assert_clean()


def save_shot(site: SampleSite, pk: int, **fields) -> None:
    """Change a shot from another process, as the admin or a worker would."""
    changes = "".join(f"shot.{name} = {value!r}; " for name, value in fields.items())
    site.shell(SHOT + f"shot = Shot.objects.get(pk={pk}); {changes}shot.save()")


def test_demo_page_updates_live_and_makes_the_readme_screenshot(live):
    # Runs first in this module, so the picture shows the seed data and this edit.
    expect(live.status()).to_have_attribute("data-state", "open")
    expect(live.status()).to_have_text("live")
    save_shot(live.site, 5, title="Low key, retouched", rating=5)
    expect(live.shot(5).locator(".title")).to_have_text("Low key, retouched")
    expect(live.shot(5).locator(".rating")).to_have_text("★★★★★")
    expect(live.page.locator("#last-change")).to_contain_text("shot 5 updated")
    live.page.set_viewport_size({"width": 900, "height": 700})
    image = live.page.screenshot(full_page=True, animations="disabled")
    # Rewritten only when the picture changed, so test runs leave git clean.
    if not SCREENSHOT.exists() or SCREENSHOT.read_bytes() != image:
        SCREENSHOT.parent.mkdir(exist_ok=True)
        SCREENSHOT.write_bytes(image)


def test_a_save_in_another_process_shows_up_within_seconds(live):
    save_shot(live.site, 2, title="Fishing boat at sunrise")
    # Timed from the moment the other process has saved and exited.
    expect(live.shot(2).locator(".title")).to_have_text(
        "Fishing boat at sunrise", timeout=5_000
    )
    # The page only re-fetched: its DOM change came with a pushed update.
    assert live.count("update") >= 1


def test_a_created_shot_appears_and_a_deleted_one_disappears(live):
    created = live.site.shell(
        SHOT + "print(Shot.objects.create(session_id=3, title='Ibex at noon').pk)"
    )
    pk = int(created.strip().splitlines()[-1])
    new = live.page.locator(f"#session-3 #shot-{pk}")
    expect(new.locator(".title")).to_have_text("Ibex at noon")
    live.site.shell(SHOT + f"Shot.objects.get(pk={pk}).delete()")
    expect(new).to_have_count(0)
    expect(live.page.locator("#last-change")).to_contain_text(f"shot {pk} deleted")


def test_an_edit_in_the_admin_shows_up(live, browser):
    admin = browser.new_context().new_page()
    try:
        admin.goto(live.site.url + "admin/photosession/shot/6/change/")
        admin.fill("#id_username", "demo")
        admin.fill("#id_password", "pushy-demo")
        admin.click("input[type=submit]")
        admin.fill("#id_title", "Laughing, in the admin")
        admin.click("input[name=_save]")
        expect(admin.locator(".messagelist")).to_contain_text("was changed")
    finally:
        admin.context.close()
    expect(live.shot(6).locator(".title")).to_have_text("Laughing, in the admin")


def test_a_push_by_hand_reaches_the_page(live):
    out = live.site.manage("pushy_test_broadcast", "photosession.shot", "8")
    assert "received by 1 gateway process" in out
    expect(live.page.locator("#last-change")).to_contain_text("shot 8 updated")


def test_reconnects_by_itself_after_the_gateway_is_killed(live, gateway):
    gateway.signal(signal.SIGKILL)
    gateway.wait()
    expect(live.status()).to_have_attribute("data-state", "reconnecting")
    # Made while no gateway listens: only what the page is sent as it comes
    # back with its versions (the history's replay, else a resync) can bring
    # it to the page.
    save_shot(live.site, 7, title="Summit cross in fog")
    gateway.stop()
    gateway.start()
    expect(live.status()).to_have_attribute("data-state", "open")
    expect(live.shot(7).locator(".title")).to_have_text("Summit cross in fog")
    save_shot(live.site, 7, title="Summit cross, later")
    expect(live.shot(7).locator(".title")).to_have_text("Summit cross, later")


def test_reloads_when_the_gateway_lost_redis(live, redis_server):
    # Updates published while the gateway's subscription is down are lost to it;
    # it says so with a resync frame, and the page reloads what it shows.
    redis_server.stop()
    redis_server.start()
    live.wait_for_frames("resync", 1, timeout=30)
    expect(live.page.locator("#sessions")).not_to_have_attribute("data-resyncs", "0")
    expect(live.status()).to_have_attribute("data-state", "open")
    save_shot(live.site, 1, title="Fog over the cranes, after Redis")
    expect(live.shot(1).locator(".title")).to_have_text(
        "Fog over the cranes, after Redis"
    )


def test_unsubscribe_stops_callbacks(live):
    live.page.evaluate(
        """() => {
        window.heard = {object: 0, list: 0};
        window.onObject = () => { heard.object += 1; };
        pushy.subscribe("/api/v1/session/1/", onObject);
        pushy.subscribe("/api/v1/shot/", () => { heard.list += 1; });
    }"""
    )
    live.wait_for_frames("subscribed", 3)
    session = "from sample_site.photosession.models import Session; "
    live.site.shell(session + "s = Session.objects.get(pk=1); s.save()")
    live.page.wait_for_function("heard.object === 1")
    live.page.evaluate("pushy.unsubscribe('/api/v1/session/1/', onObject)")
    live.wait_for_frames("unsubscribed", 1)
    # The gateway forwards in publish order: once the shot's update is heard,
    # the session's (published first) has been handled too.
    live.site.shell(
        session + "s = Session.objects.get(pk=1); s.save(); "
        "from sample_site.photosession.models import Shot; "
        "Shot.objects.get(pk=9).save()"
    )
    live.page.wait_for_function("heard.list >= 1")
    assert live.page.evaluate("heard.object") == 1


def test_works_under_a_strict_content_security_policy(live):
    policy = live.response.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    save_shot(live.site, 10, rating=1)
    expect(live.shot(10).locator(".rating")).to_have_text("★☆☆☆☆")
    assert live.page.evaluate("window.cspViolations") == []
    assert not [line for line in live.page.log.console if "Refused" in line]
