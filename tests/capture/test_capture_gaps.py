"""Capture's gap is covered: a page resyncs what changed while nobody captured.

The promise (issue 20, item 5): for every committed change of an object a page
shows, the page receives the update or a resync of that URL, whatever happened
meanwhile. Here ``pushy_capture`` is down while an ``UPDATE`` runs, against a
real PostgreSQL, Redis, capture process and gateway, and the page is

- away meanwhile, and back with the version it held (as pushy.js does);
- rendered before the gap, subscribing with the version it was rendered at.

Either way it must be told to resync that URL. A message to the clients
connected when capture comes back reaches neither; the new version epoch the
capture starts then does (pushy/capture/resync.py).
"""

from __future__ import annotations

import pytest

from pushy.rendering import current_version
from tests.capture.helpers import next_resync, sql, subscribe, wait_for_count
from tests.captureapp.models import Item
from tests.gateway.clients import Client
from tests.support.capture import CaptureProcess
from tests.support.gateway import Gateway

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True, databases=["default", "capture"]),
    pytest.mark.timeout(120),
]

# captureapp has no views for the gateway's default authorization to ask.
OPEN = {"AUTHORIZE": "pushy.authorization.allow_all"}


# The gateway's log line as it passes a resync request on to its clients.
REQUESTED = "resync requested on pushy_:resync"


def capture_gap(
    published, capture: CaptureProcess, item: Item, gateway: Gateway
) -> CaptureProcess:
    """Stop capture, change ``item`` in SQL, start capture again; the new one.

    Returns once the new process asked for its resync (an event on Redis), so
    the versions have moved, and once the gateway passed it on to the clients
    connected then: a page connecting later hears of the gap only through the
    version it subscribes with.
    """
    capture.stop()
    sql("UPDATE captureapp_item SET title = 'changed in the gap' WHERE id = %s",
        [item.pk])  # fmt: skip
    restarted = CaptureProcess(capture.redis_url).start()
    try:
        body = next_resync(published)
        assert body == {
            "models": ["captureapp.item", "captureapp.tag"],
            "reason": "capture became active",
        }
        wait_for_count(gateway.output, REQUESTED, 2)
    except BaseException:
        restarted.stop()
        raise
    return restarted


@pytest.fixture
def item_url():
    item = Item.objects.create(title="before")
    return item, f"/api/item/{item.pk}/"


def test_a_page_away_during_the_gap_is_resynced_when_back(
    published, pushy_redis, item_url
):
    item, url = item_url
    with Gateway(pushy_redis.url, pushy_settings=OPEN) as gateway:
        capture = CaptureProcess(pushy_redis.url).start()
        try:
            next_resync(published)  # the first process became active
            wait_for_count(gateway.output, REQUESTED, 1)
            page = Client(gateway.ws_url, timeout=10)
            held = subscribe(page, url, None)["version"]
            page.close()  # the page goes away
            capture = capture_gap(published, capture, item, gateway)
            back = Client(gateway.ws_url, timeout=10)
            subscribe(back, url, held)
            resync = back.recv_until(lambda m: m["type"] == "resync", timeout=10)
            assert resync["url"] == url, resync
            back.close()
        finally:
            capture.stop()


def test_a_page_rendered_before_the_gap_is_resynced(published, pushy_redis, item_url):
    item, url = item_url
    with Gateway(pushy_redis.url, pushy_settings=OPEN) as gateway:
        capture = CaptureProcess(pushy_redis.url).start()
        try:
            next_resync(published)
            wait_for_count(gateway.output, REQUESTED, 1)
            rendered = current_version()  # as {% pushy_live %} does
            assert rendered is not None
            capture = capture_gap(published, capture, item, gateway)
            page = Client(gateway.ws_url, timeout=10)
            subscribe(page, url, rendered)
            resync = page.recv_until(lambda m: m["type"] == "resync", timeout=10)
            assert resync["url"] == url, resync
            page.close()
        finally:
            capture.stop()
