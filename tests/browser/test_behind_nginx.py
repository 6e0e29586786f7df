"""Rolling restarts behind the documented nginx: the page never misses a change.

The demo site and two gateways sit behind a real nginx started with the
configuration from docs/deployment.md (gateways under /pushy/, the site on the
same origin). The gateways are restarted one after the other; each time, the
page's gateway closes it with 1001, the page reconnects through nginx to the
other one, resyncs, and keeps receiving updates.
"""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from tests.browser.site import SampleSite
from tests.browser.test_live_page import LivePage, save_shot
from tests.support.gateway import Gateway
from tests.support.nginx import Nginx
from tests.support.servers import free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture
def deployment(redis_server):
    """nginx in front of the demo site and two gateways, on free ports."""
    nginx_port, gateway_ports = free_port(), [free_port(), free_port()]
    site = SampleSite(redis_server.url, f"http://127.0.0.1:{nginx_port}/pushy/")
    gateways = [
        Gateway(redis_server.url, port=port, env=site.env) for port in gateway_ports
    ]
    nginx = Nginx(gateway_ports, site.port, port=nginx_port)
    try:
        site.start()
        for gateway in gateways:
            gateway.start()
        nginx.start()
        yield site, gateways, nginx
    finally:
        nginx.stop()
        for gateway in gateways:
            gateway.stop()
        site.stop()


def connections(gateway: Gateway) -> int:
    return gateway.get_json("stats")["connections"]


def wait_until(predicate, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_page_survives_rolling_restarts_through_nginx(page, deployment):
    site, gateways, nginx = deployment
    live = LivePage(page, site)
    live.response = page.goto(nginx.url)
    live.wait_for_frames("subscribed", 2)
    expect(live.status()).to_have_attribute("data-state", "open")
    save_shot(site, 3, title="Before any restart")
    expect(live.shot(3).locator(".title")).to_have_text("Before any restart")

    for round_number in (1, 2):
        (serving,) = [g for g in gateways if connections(g) == 1]
        (other,) = [g for g in gateways if g is not serving]
        subscribed_before = live.count("subscribed")

        assert serving.stop() == 0  # SIGTERM: clients are closed with 1001
        # A change while the page is between gateways: the update or the resync
        # after the reconnect must bring it.
        during = f"During restart {round_number}"
        save_shot(site, 4, title=during)
        # The page reconnects by itself, through nginx, to the other gateway.
        live.wait_for_frames("subscribed", subscribed_before + 2, timeout=30)
        wait_until(lambda gateway=other: connections(gateway) == 1)
        expect(live.status()).to_have_attribute("data-state", "open")
        # Brought by the update, or by a resync of the shot list if the save
        # came before the page was back (versions: an unchanged list is not
        # resynced, so either may happen).
        expect(live.shot(4).locator(".title")).to_have_text(during)
        serving.start()  # back on its port, ready for the next round

        title = f"After restart {round_number}"
        save_shot(site, 3, title=title)
        expect(live.shot(3).locator(".title")).to_have_text(title)

    live.assert_clean()
