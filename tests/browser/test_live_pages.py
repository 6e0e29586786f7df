"""End to end: the sample site's pages written without JavaScript of their own
(``/nojs/``: ``{% pushy_live %}`` only; ``/htmx/``: htmx triggered by pushy's
events), in Chromium, against runserver, a real ``runpushy`` and Redis, with
saves made by other processes. Subscriptions are checked on the gateway's
``/stats``, fetches with Playwright's request events.
"""

# The module-scoped fixtures of test_live_page (the site, the gateway) are
# imported, and test arguments of the same names use them.
# ruff: noqa: F401, F811

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from tests.browser.test_live_page import (
    CSP_WATCH,
    gateway,
    gateway_port,
    module_gateway,
    save_shot,
    site,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(120)]

SHOT = "from sample_site.photosession.models import Shot; "


def subscriptions(gateway) -> int:
    return gateway.get_json("/stats")["subscriptions"]


def wait_for_subscriptions(gateway, count: int, timeout: float = 10) -> None:
    """Poll /stats, with a deadline, until it reports ``count`` subscriptions."""
    deadline = time.monotonic() + timeout
    while (seen := subscriptions(gateway)) != count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} subscriptions expected, /stats says {seen}")
        time.sleep(0.05)


class Page:
    """A sample site page in a tab, with the fetches it made of its own URL."""

    def __init__(self, page, site, path: str) -> None:
        self.page = page
        self.url = site.url + path.lstrip("/")
        self.requests: list[str] = []
        page.add_init_script(CSP_WATCH)
        page.on("request", self._count)
        expect.set_options(timeout=10_000)

    def _count(self, request) -> None:
        if request.resource_type in ("fetch", "xhr"):
            self.requests.append(request.url)

    def open(self, gateway, subscribed: int) -> Page:
        """Open it and wait until the gateway holds its ``subscribed`` URLs."""
        before = subscriptions(gateway)
        self.page.goto(self.url)
        wait_for_subscriptions(gateway, before + subscribed)
        self.page.wait_for_function("pushy.state === 'open'")
        return self

    def assert_clean(self) -> None:
        assert self.page.evaluate("window.cspViolations") == []
        assert self.page.log.errors == []


def shot_count(site) -> int:
    return int(site.shell(SHOT + "print(Shot.objects.count())").split()[-1])


@pytest.fixture
def nojs(page, site, gateway):
    # Its URLs: every shot, the shot list and the session list.
    opened = Page(page, site, "/nojs/").open(gateway, shot_count(site) + 2)
    yield opened
    opened.assert_clean()


def test_nojs_page_refreshes_a_changed_shot(nojs, site):
    save_shot(site, 3, title="Harbour lights, live", rating=4)
    shot = nojs.page.locator("#pushy-photosession-shot-3")
    expect(shot.locator(".title")).to_have_text("Harbour lights, live")
    expect(shot.locator(".rating")).to_have_text("★★★★☆")
    assert all(url == nojs.url for url in nojs.requests)


def test_elements_added_later_are_subscribed_and_removed_ones_unsubscribed(
    nojs, gateway
):
    before = subscriptions(gateway)
    nojs.page.evaluate(
        """() => {
        const box = document.createElement("div");
        box.id = "added";
        for (let i = 0; i < 500; i++) {
          const p = document.createElement("p");
          p.dataset.pushyUrl = "/api/v1/session/2/";  // one URL: one subscription
          box.append(p);
        }
        document.body.append(box);
    }"""
    )
    wait_for_subscriptions(gateway, before + 1)
    nojs.page.evaluate("document.getElementById('added').remove()")
    wait_for_subscriptions(gateway, before)


def test_a_refresh_keeps_a_half_typed_form_field(nojs, site):
    field = nojs.page.locator("#session-1 input[name=title]")
    field.click()
    field.type("Fog over the cr")
    save_shot(site, 1, title="Cranes, refreshed")
    expect(nojs.page.locator("#pushy-photosession-shot-1 .title")).to_have_text(
        "Cranes, refreshed"
    )
    expect(field).to_have_value("Fog over the cr")
    expect(field).to_be_focused()
    # Typing goes on where it stopped, and the form still works without script.
    field.type("anes")
    field.press("Enter")
    nojs.page.wait_for_url(nojs.url)
    expect(nojs.page.locator("#session-1 .shot .title").last).to_have_text(
        "Fog over the cranes"
    )


def test_a_burst_of_50_updates_costs_a_few_fetches(nojs, site):
    site.shell(
        SHOT + "shot = Shot.objects.get(pk=4)\n"
        "for n in range(50):\n"
        "    shot.title = f'Burst {n}'; shot.save()"
    )
    expect(nojs.page.locator("#pushy-photosession-shot-4 .title")).to_have_text(
        "Burst 49"
    )
    # Let a trailing fetch, if one is due, be counted too.
    nojs.page.wait_for_timeout(500)
    assert 1 <= len(nojs.requests) <= 4, nojs.requests


def test_a_created_shot_appears_and_a_deleted_ones_element_is_removed(nojs, site):
    created = site.shell(
        SHOT + "print(Shot.objects.create(session_id=2, title='Nets at dusk').pk)"
    )
    pk = int(created.split()[-1])
    new = nojs.page.locator(f"#session-2 #pushy-photosession-shot-{pk}")
    expect(new.locator(".title")).to_have_text("Nets at dusk")
    site.shell(SHOT + f"Shot.objects.get(pk={pk}).delete()")
    expect(nojs.page.locator(f"#pushy-photosession-shot-{pk}")).to_have_count(0)


@pytest.fixture
def htmx(page, site, gateway):
    opened = Page(page, site, "/htmx/").open(gateway, shot_count(site) + 1)
    yield opened
    opened.assert_clean()


def test_htmx_page_refetches_a_row_when_its_shot_changes(htmx, site):
    save_shot(site, 6, title="Laughing, via htmx")
    expect(htmx.page.locator("#shot-6 .title")).to_have_text("Laughing, via htmx")
    assert htmx.requests == [site.url + "htmx/row/6/"]
    # The swapped-in row is bound again: a second change reaches it too.
    save_shot(site, 6, rating=2)
    expect(htmx.page.locator("#shot-6 .rating")).to_have_text("★★☆☆☆")


def test_htmx_page_follows_creates_and_deletes(htmx, site, gateway):
    before = subscriptions(gateway)
    created = site.shell(
        SHOT + "print(Shot.objects.create(session_id=1, title='Ferry, by htmx').pk)"
    )
    pk = int(created.split()[-1])
    expect(htmx.page.locator(f"#shot-{pk} .title")).to_have_text("Ferry, by htmx")
    # The whole body was swapped: the new row's URL is subscribed, no other churn.
    wait_for_subscriptions(gateway, before + 1)
    site.shell(SHOT + f"Shot.objects.get(pk={pk}).delete()")
    expect(htmx.page.locator(f"#shot-{pk}")).to_have_count(0)
    wait_for_subscriptions(gateway, before)
