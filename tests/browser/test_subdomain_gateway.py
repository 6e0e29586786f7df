"""A gateway on its own subdomain, behind the documented nginx, in Chromium:
docs/deployment.md, "A gateway on its own subdomain".

The demo site answers on www.pushy.test and the gateway on ws.pushy.test, both
through one nginx started with that section's configuration (``pushy.test``
for ``example.com``, free ports); Chromium maps both names to nginx. A user
logs in with the admin's login form on www, and the page subscribes to the
user's own order, a private URL, on ws. With SESSION_COOKIE_DOMAIN set the
session cookie goes along: the subscription is allowed and the order's update
arrives, with SameSite Lax (Django's default) or Strict. Without it the cookie
stays on www and the socket is anonymous: refused.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import pytest

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.browser.site import ROOT, SampleSite
from tests.support.gateway import Gateway
from tests.support.nginx import Nginx, documented_config
from tests.support.servers import free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(90)]

SECTION = "A gateway on its own subdomain"
DOMAIN = "pushy.test"

SETTINGS = """\
from sample_site.settings import *  # noqa: F403

# 127.0.0.1 for the test harness, which waits for the site on its own port.
ALLOWED_HOSTS = ["www.{domain}", "127.0.0.1"]
SESSION_COOKIE_DOMAIN = {cookie_domain!r}
SESSION_COOKIE_SAMESITE = {samesite!r}
PUSHY_SETTINGS = {{**PUSHY_SETTINGS, "TRUSTED_PROXIES": ["127.0.0.1"]}}  # noqa: F405
"""

USER = """
from django.contrib.auth.models import User
from sample_site.photosession.models import Order
alice = User.objects.create_user("alice", password="pw-alice", is_staff=True)
print(Order.objects.create(owner=alice, shot_id=1).pk)
"""

SAVE = """
from sample_site.photosession.models import Order
order = Order.objects.get(pk={pk})
order.copies = 7
order.save()
"""


def subdomain_config() -> str:
    """The section's nginx block for pushy.test.

    ``$host`` becomes ``$http_host``: nginx listens on a free port here, not
    80, and Django's CSRF check compares the login form's Origin
    (``http://www.pushy.test:PORT``) with the Host it is given, port included.
    """
    text = documented_config(SECTION).replace("example.com", DOMAIN)
    return text.replace("$host;", "$http_host;")


class Deployment:
    """nginx on one port for both names, the demo site and one gateway."""

    def __init__(self, redis_url: str, cookie_domain: str | None, samesite: str):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="pushy-subdomain-")
        module = f"subdomain_settings_{self.port}"
        Path(self.dir, f"{module}.py").write_text(
            SETTINGS.format(
                domain=DOMAIN, cookie_domain=cookie_domain, samesite=samesite
            )
        )
        self.site = SampleSite(redis_url, f"http://ws.{DOMAIN}:{self.port}/")
        self.site.env.update(
            DJANGO_SETTINGS_MODULE=module, PYTHONPATH=f"{self.dir}:{ROOT}"
        )
        self.gateway = Gateway(redis_url, env=self.site.env)
        self.nginx = Nginx(
            [self.gateway.port], self.site.port, self.port, config=subdomain_config()
        )

    def url(self, host: str, path: str = "/") -> str:
        return f"http://{host}.{DOMAIN}:{self.port}{path}"

    def __enter__(self) -> Deployment:
        try:
            self.site.start()
            self.gateway.start()
            self.nginx.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.nginx.stop()
        self.gateway.stop()
        self.site.stop()


@pytest.fixture
def mapped_browser(browser):
    """A Chromium of its own, resolving every *.pushy.test name to 127.0.0.1."""
    mapped = browser.browser_type.launch(
        executable_path=CHROMIUM,
        args=[*CHROMIUM_ARGS, f"--host-resolver-rules=MAP *.{DOMAIN} 127.0.0.1"],
    )
    yield mapped
    mapped.close()


class Page:
    """A page of the site, its WebSockets' URLs and received frames recorded."""

    def __init__(self, browser) -> None:
        self.context = browser.new_context()
        self.context.set_default_timeout(15_000)
        self.page = self.context.new_page()
        self.sockets: list[str] = []
        self.frames: list[dict] = []
        self.page.on("websocket", self._watch)

    def _watch(self, socket) -> None:
        self.sockets.append(socket.url)
        socket.on("framereceived", lambda data: self.frames.append(json.loads(data)))

    def log_in(self, deployment: Deployment) -> None:
        """The admin's login form on www, then the live page."""
        self.page.goto(deployment.url("www", "/admin/login/?next=/"))
        self.page.fill("#id_username", "alice")
        self.page.fill("#id_password", "pw-alice")
        with self.page.expect_navigation():
            self.page.click("input[type=submit]")
        assert self.page.url == deployment.url("www"), self.page.url

    def answer(self, url: str, timeout: float = 15) -> dict:
        """The gateway's answer to the page's subscribe of ``url``."""
        self.page.evaluate("url => pushy.subscribe(url, () => {})", url)
        return self.first(lambda f: f.get("url") == url and f["type"] != "update")

    def first(self, match, timeout: float = 15) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            found = [f for f in self.frames if match(f)]
            if found:
                return found[0]
            assert time.monotonic() < deadline, self.frames
            self.page.wait_for_timeout(20)

    def session_cookie(self) -> dict:
        (cookie,) = [c for c in self.context.cookies() if c["name"] == "sessionid"]
        return cookie


@pytest.mark.parametrize(
    ("cookie_domain", "samesite", "answer"),
    [
        (f".{DOMAIN}", "Lax", "subscribed"),
        (f".{DOMAIN}", "Strict", "subscribed"),
        (None, "Lax", "error"),
    ],
)
def test_the_session_cookie_reaches_a_gateway_on_its_own_subdomain(
    redis_server, mapped_browser, cookie_domain, samesite, answer
):
    with Deployment(redis_server.url, cookie_domain, samesite) as deployment:
        order = int(deployment.site.shell(USER).split()[-1])
        page = Page(mapped_browser)
        try:
            page.log_in(deployment)
            cookie = page.session_cookie()
            assert cookie["domain"] == (cookie_domain or f"www.{DOMAIN}")
            assert cookie["sameSite"] == samesite
            url = f"/api/v1/order/{order}/"
            got = page.answer(url)
            assert page.sockets == [f"ws://ws.{DOMAIN}:{deployment.port}/ws"]
            assert got["type"] == answer, got
            if answer == "error":
                assert got["code"] == "forbidden", got
                assert "anonymous" in got["message"], got
                return
            deployment.site.shell(SAVE.format(pk=order))
            update = page.first(lambda f: f["type"] == "update" and f["url"] == url)
            assert update["data"] == {"shot": 1, "copies": 7}, update
        finally:
            page.context.close()
