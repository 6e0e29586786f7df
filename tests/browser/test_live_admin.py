"""The live admin in Chromium: two people on one shot's change form in the demo
site's admin, each in their own logged-in browser context, a real gateway and
Redis. When one saves (or the shot is deleted elsewhere), the other's form shows
the banner; the one who saved does not."""

from __future__ import annotations

import json
import time

import pytest
from playwright.sync_api import expect

from tests.browser.site import SampleSite
from tests.support.gateway import Gateway
from tests.support.servers import free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(120)]

OTHER_USER = (
    "from django.contrib.auth.models import User; "
    "User.objects.create_superuser('other', 'other@example.com', 'other-pass')"
)


@pytest.fixture(scope="module")
def site(redis_server):
    port = free_port()
    running = SampleSite(redis_server.url, f"http://127.0.0.1:{port}/")
    running.gateway_port = port
    try:
        running.start()
        running.shell(OTHER_USER)
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def gateway(site, redis_server):
    with Gateway(redis_server.url, port=site.gateway_port, env=site.env) as running:
        yield running


class AdminPage:
    """A logged-in admin tab, with the pushy frames it received."""

    def __init__(self, browser, site: SampleSite, username: str, password: str):
        self.site = site
        self.context = browser.new_context()
        self.context.set_default_timeout(10_000)
        self.page = self.context.new_page()
        self.frames: list[dict] = []
        self.sent: list[dict] = []  # the frames the page sent
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("websocket", self._watch)
        self.page.goto(site.url + "admin/login/")
        self.page.fill("#id_username", username)
        self.page.fill("#id_password", password)
        self.page.click("input[type=submit]")
        expect(self.page.locator("#user-tools")).to_be_visible()

    def _watch(self, socket) -> None:
        socket.on(
            "framereceived", lambda payload: self.frames.append(json.loads(payload))
        )
        socket.on("framesent", lambda payload: self.sent.append(json.loads(payload)))

    def open_shot(self, pk: int) -> AdminPage:
        self.frames.clear()
        self.page.goto(f"{self.site.url}admin/photosession/shot/{pk}/change/")
        self.wait_for(lambda: any(f["type"] == "subscribed" for f in self.frames))
        return self

    def wait_for(self, condition, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"not reached: {self.frames}")
            self.page.wait_for_timeout(20)

    def banner(self):
        return self.page.locator("#pushy-admin-banner")

    def presence(self):
        return self.page.locator("#pushy-admin-presence")

    def close(self) -> None:
        self.context.close()
        assert self.errors == []


@pytest.fixture
def admins(browser, site, gateway):
    demo = AdminPage(browser, site, "demo", "pushy-demo")
    other = AdminPage(browser, site, "other", "other-pass")
    yield demo, other
    demo.close()
    other.close()


def test_two_editors_of_one_shot_see_each_other_and_see_one_leave(admins):
    demo, other = admins
    demo.open_shot(5)
    expect(demo.presence()).to_have_count(0)  # alone
    other.open_shot(5)
    # The clock on each line is the other's join time, as this browser shows it.
    expect(demo.presence()).to_contain_text("other (since", timeout=10_000)
    expect(demo.presence()).to_contain_text("is also editing this shot.")
    expect(other.presence()).to_contain_text("demo (since")
    expect(other.presence()).to_have_attribute("data-count", "1")
    # The banner of saves is another element, still absent.
    expect(demo.banner()).to_have_count(0)
    # A second tab of the same user is the same person: still one other.
    second = other.context.new_page()
    second.goto(f"{other.site.url}admin/photosession/shot/5/change/")
    # Its list comes in the same turn as demo's would, had it counted twice.
    expect(second.locator("#pushy-admin-presence")).to_contain_text("demo (since")
    expect(demo.presence()).to_have_attribute("data-count", "1")
    second.close()
    # The other editor goes elsewhere: demo is alone again.
    other.open_shot(4)
    expect(demo.presence()).to_have_count(0, timeout=10_000)
    expect(other.presence()).to_have_count(0)


def test_after_a_gateway_restart_the_editors_join_again(admins, gateway):
    demo, other = admins
    demo.open_shot(6)
    other.open_shot(6)
    expect(demo.presence()).to_contain_text("other (since")
    gateway.stop()
    demo.page.wait_for_function("pushy.state === 'reconnecting'")
    other.page.wait_for_function("pushy.state === 'reconnecting'")
    demo.frames.clear()
    other.frames.clear()
    gateway.start()

    def sees_two(page: AdminPage) -> bool:
        return any(f["type"] == "presence" and f["count"] == 2 for f in page.frames)

    # The new gateway keeps nothing: each page joined again as it reconnected.
    demo.wait_for(lambda: sees_two(demo), timeout=20)
    other.wait_for(lambda: sees_two(other), timeout=20)
    expect(demo.presence()).to_contain_text("other (since")
    expect(other.presence()).to_contain_text("demo (since")


def test_a_save_by_someone_else_shows_the_banner_not_to_the_one_who_saved(admins):
    demo, other = admins
    demo.open_shot(3)
    # The object's API URL and the form's (presence) are asked for as one
    # object's each: on a Redis Cluster one channel, not 13.
    demo.wait_for(lambda: any(f["type"] == "joined" for f in demo.frames))
    asked = {f["action"]: f for f in demo.sent if f["action"] != "ping"}
    assert asked["subscribe"]["object"] is True
    assert asked["subscribe"]["url"] == "/api/v1/shot/3/", asked
    assert asked["join"] == {
        "action": "join",
        "url": "/admin/photosession/shot/3/change/",
        "object": True,
    }
    other.open_shot(3)
    expect(demo.banner()).to_have_count(0)
    other.page.fill("#id_title", "Retitled by the other editor")
    # The saver's form posts into a frame, so that its page stays and receives
    # the update of its own save: a banner there would be a false alarm.
    other.page.evaluate(
        """() => {
        const sink = document.createElement("iframe");
        sink.name = "sink";
        document.body.appendChild(sink);
        document.querySelector("#shot_form").target = "sink";
        document.querySelector("input[name=_continue]").click();
    }"""
    )
    banner = demo.banner()
    expect(banner).to_contain_text(
        "This shot was changed by someone else at", timeout=5_000
    )
    expect(banner).to_contain_text("reload before saving")
    clock = demo.page.evaluate(
        "new Date().toLocaleTimeString([], {hour: '2-digit', minute: '2-digit'})"
    )
    assert clock[:2] in banner.inner_text()
    other.wait_for(lambda: any(f["type"] == "update" for f in other.frames))
    assert other.banner().count() == 0, "the saver's own save is not someone else's"
    other.page.reload()
    expect(other.page.locator("#id_title")).to_have_value(
        "Retitled by the other editor"
    )
    expect(other.banner()).to_have_count(0)
    # "reload" gives the current values.
    demo.page.click("#pushy-admin-banner a")
    expect(demo.page.locator("#id_title")).to_have_value("Retitled by the other editor")
    expect(demo.banner()).to_have_count(0)


def test_a_delete_elsewhere_is_shown_and_other_objects_are_not(admins, site):
    demo, other = admins
    pk = int(
        site.shell(
            "from sample_site.photosession.models import Shot; "
            "print(Shot.objects.create(session_id=2, title='Doomed').pk)"
        ).split()[-1]
    )
    demo.open_shot(pk)
    other.open_shot(4)
    site.shell(
        "from sample_site.photosession.models import Shot; "
        f"Shot.objects.get(pk={pk}).delete()"
    )
    expect(demo.banner()).to_contain_text("This shot was deleted by someone else at")
    expect(demo.banner()).to_have_attribute("data-event", "delete")
    # The other editor watches shot 4: nothing to say about the delete.
    assert other.banner().count() == 0
    assert any(f.get("type") == "subscribed" for f in other.frames)


def test_only_change_forms_of_pushed_objects_load_pushy(admins, site):
    demo, _ = admins
    demo.page.goto(site.url + "admin/photosession/shot/")
    assert demo.page.locator("script[src$='pushy/js/admin.js']").count() == 0
    demo.page.goto(site.url + "admin/photosession/shot/add/")
    assert demo.page.locator("script[src$='pushy/js/admin.js']").count() == 0
    demo.page.goto(site.url + "admin/photosession/session/1/change/")
    script = demo.page.locator("script[src$='pushy/js/admin.js']")
    expect(script).to_have_attribute("data-pushy-admin-url", "/api/v1/session/1/")


def test_a_save_while_the_form_loads_or_is_offline_is_not_missed(admins, site, gateway):
    demo, _ = admins
    # The form is rendered, but pushy.js is held back: the page cannot have
    # subscribed yet when the shot is saved elsewhere.
    held = []
    demo.page.route("**/pushy/js/pushy.js", lambda route: held.append(route))
    demo.page.goto(f"{site.url}admin/photosession/shot/9/change/", wait_until="commit")
    demo.wait_for(lambda: held)
    site.shell(
        "from sample_site.photosession.models import Shot; "
        "s = Shot.objects.get(pk=9); s.title = 'Saved while loading'; s.save()"
    )
    held[0].continue_()
    # The form's version is older than the save: the gateway replays the save
    # from its history (docs/protocol.md, "Versions").
    banner = demo.banner()
    expect(banner).to_contain_text("This shot was changed by someone else")
    expect(banner).to_have_attribute("data-event", "update")

    # Offline: the page is subscribed, the gateway goes away, a save is made
    # that no gateway hears, the gateway comes back: the page is told.
    demo.page.unroute("**/pushy/js/pushy.js")
    demo.open_shot(10)
    expect(demo.banner()).to_have_count(0)
    gateway.stop()
    demo.page.wait_for_function("pushy.state === 'reconnecting'")
    # ... and the history that could replay it is lost (evicted, say): only
    # a resync can tell the page now.
    site.shell(
        "from sample_site.photosession.models import Shot; "
        "s = Shot.objects.get(pk=10); s.title = 'Saved while offline'; s.save(); "
        "from pushy import versions; from pushy.redis_clients import client_from_url; "
        "from pushy import conf; "
        "client_from_url(conf.get('REDIS_URL')).delete(versions.history_key())"
    )
    gateway.start()
    expect(demo.banner()).to_contain_text(
        "may have been changed by someone else", timeout=15_000
    )
    expect(demo.banner()).to_have_attribute("data-event", "resync")
