"""What the capture gap and broken-table tests share: SQL by hand, waits on Redis."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.db import connections

from tests.gateway.clients import Client

RESYNC = "pushy_:resync"


def sql(statement: str, params: list | None = None) -> None:
    """Run SQL on the captured database, as psql or a cron job would."""
    with connections["capture"].cursor() as cursor:
        cursor.execute(statement, params)


def next_resync(published, timeout: float = 10) -> dict:
    """The body of the next resync request on Redis (updates before it skipped)."""
    while True:
        channel, body = published.next(timeout)
        if channel == RESYNC:
            return body


def await_tag(published, slug: str) -> list:
    """Wait for Tag ``slug``'s create; what was published before it.

    Notifications come in commit order, so once this arrives the capture has
    handled everything committed before the Tag was.
    """
    seen = []
    while True:
        channel, body = published.next(10)
        if body.get("url") == f"/api/tag/{slug}/":
            return seen
        seen.append((channel, body))


def subscribe(client: Client, url: str, version: int | None) -> dict:
    """Subscribe as pushy.js does (with the version held); the ``subscribed``."""
    answer = client.request(action="subscribe", url=url, version=version)
    assert (answer["type"], answer["url"]) == ("subscribed", url), answer
    assert isinstance(answer.get("version"), int), answer
    return answer


def wait_for_count(output: Callable[[], str], text: str, count: int, timeout=10):
    """Poll a log (with a deadline) until ``text`` is in it ``count`` times."""
    deadline = time.monotonic() + timeout
    while output().count(text) < count:
        assert time.monotonic() < deadline, f"{text!r} not {count} times:\n{output()}"
        time.sleep(0.02)
