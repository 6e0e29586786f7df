"""Fixtures for the browser side: Debian's Chromium driven by Playwright.

Playwright's own browser download does not work on our machines, so the browser
is always /usr/bin/chromium (``.ci/run`` installs the package). One browser for
the tests of this package; each test gets a fresh context (cookies, storage) and page.
"""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM = os.environ.get("PUSHY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture(scope="package")
def browser():
    # Package scope: Playwright's sync API keeps an event loop in this thread,
    # which Django's ORM refuses to run beside; tests outside this package use it.
    if not shutil.which(CHROMIUM):
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


class PageLog:
    """What a page said: console lines and uncaught errors."""

    def __init__(self, page) -> None:
        self.console: list[str] = []
        self.errors: list[str] = []
        page.on("console", lambda message: self.console.append(message.text))
        page.on("pageerror", lambda error: self.errors.append(str(error)))


@pytest.fixture
def page(browser):
    context = browser.new_context()
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.log = PageLog(page)
    yield page
    context.close()
