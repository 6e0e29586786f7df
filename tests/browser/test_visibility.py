"""Visibility in Chromium: ``{% pushy_live %}`` lists and details follow it.

A test-app site (runserver, tests.settings with session middleware) shows a
user the posts they may see, a real ``runpushy`` runs the same views as that
user, and posts change in other processes (``manage.py shell``: real saves,
published by pushy's signals with their visibility token). A list loses a
post hidden from its reader and gains one published; the hidden post's own
page stays, marked ``data-pushy-forbidden``. Nothing here uses the ORM in the
test's thread (Playwright's loop is there): a database file of its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.support.gateway import Gateway
from tests.support.servers import free_port, stop_process

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = """\
from tests.settings import *  # noqa: F403

PUSHY_SETTINGS = {{**PUSHY_SETTINGS, "SOCKET_SERVER": "http://127.0.0.1:{port}/"}}
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
"""
SETUP = """
import json
from django.contrib.auth.models import User
from django.test import Client
from tests.testapp.models import Post

def cookie(user):
    browser = Client()
    browser.force_login(user)
    return browser.cookies["sessionid"].value

author = User.objects.create_user("author")
reader = User.objects.create_user("reader")
shown = Post.objects.create(author=author, published=True, title="shown")
draft = Post.objects.create(author=author, published=False, title="draft")
print(json.dumps({"reader": cookie(reader), "shown": shown.pk, "draft": draft.pk}))
"""
CHANGE = """
from tests.testapp.models import Post
post = Post.objects.get(pk={pk})
post.published = {published}
post.save()
"""


class Site:
    """runserver and runpushy sharing a database file and the test's Redis."""

    def __init__(self, redis_url: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pushy-visibility-"))
        self.port, self.gateway_port = free_port(), free_port()
        module = f"visibility_settings_{self.port}"
        (self.dir / f"{module}.py").write_text(SETTINGS.format(port=self.gateway_port))
        self.env = {
            "DJANGO_SETTINGS_MODULE": module,
            "PYTHONPATH": f"{self.dir}:{ROOT}",
            "PUSHY_TEST_DB_NAME": str(self.dir / "db.sqlite3"),
            "PUSHY_REDIS_URL": redis_url,
            "PYTHONUNBUFFERED": "1",
        }
        self.redis_url = redis_url
        self.proc: subprocess.Popen | None = None
        self.gateway: Gateway | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def django(self, *args: str) -> str:
        import os

        done = subprocess.run(
            [sys.executable, "-m", "django", *args],
            env={**os.environ, **self.env},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def start(self) -> Site:
        import os

        self.django("migrate", "--run-syncdb", "-v", "0")
        self.log = open(self.dir / "runserver.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "django", "runserver", "--noreload", "--insecure",
             f"127.0.0.1:{self.port}"],
            env={**os.environ, **self.env}, cwd=ROOT, stdout=self.log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            assert self.proc.poll() is None, (self.dir / "runserver.log").read_text()
            try:
                urllib.request.urlopen(self.url + "api/post/", timeout=2).close()
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "runserver did not answer"
                time.sleep(0.05)  # a poll, with a deadline
        self.gateway = Gateway(self.redis_url, port=self.gateway_port, env=self.env)
        self.gateway.start()
        return self

    def stop(self) -> None:
        if self.gateway is not None:
            self.gateway.stop()
        if self.proc is not None:
            stop_process(self.proc)
            self.log.close()

    def shell(self, code: str) -> str:
        return self.django("shell", "-c", code)


@pytest.fixture
def site(redis_server):
    running = Site(redis_server.url)
    try:
        yield running.start()
    finally:
        running.stop()


def subscribed(page, url: str) -> None:
    """Wait until the page's pushy holds ``url`` and the gateway said so."""
    page.wait_for_function(
        "url => window.pushy && pushy.state === 'open' && pushy._subscriptions.has(url)"
        " && pushy._versions.has(url)",
        arg=url,
    )


def test_live_lists_and_details_follow_visibility(site, page):
    ids = json.loads(site.shell(SETUP).strip().splitlines()[-1])
    page.context.add_cookies(
        [{"name": "sessionid", "value": ids["reader"], "url": site.url}]
    )
    shown, draft = ids["shown"], ids["draft"]
    page.goto(site.url + "pages/posts/")
    expect(page.locator(f"#post-{shown}")).to_have_text("shown")
    expect(page.locator(f"#post-{draft}")).to_have_count(0)
    detail = page.context.new_page()
    detail.goto(site.url + f"pages/post/{shown}/")
    block = detail.locator(f"#pushy-testapp-post-{shown}")
    expect(block).to_have_text("shown")
    hidden_events = detail.evaluate_handle(
        "() => { const seen = []; document.addEventListener('pushy:hidden',"
        " (e) => seen.push(e.detail)); return seen; }"
    )
    subscribed(page, "/api/post/")
    subscribed(detail, f"/api/post/{shown}/")

    site.shell(CHANGE.format(pk=shown, published=False))
    expect(page.locator(f"#post-{shown}")).to_have_count(0)  # the list refreshed
    expect(block).to_have_attribute("data-pushy-forbidden", "")
    expect(block).to_have_text("shown")  # stale, kept, not refetched (a 404)
    assert hidden_events.json_value() == [
        {"type": "hidden", "url": f"/api/post/{shown}/", "collection": "/api/post/"}
    ]

    site.shell(CHANGE.format(pk=draft, published=True))
    expect(page.locator(f"#post-{draft}")).to_have_text("draft")
    assert page.log.errors == []
