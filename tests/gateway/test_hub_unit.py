"""Unit tests of the hub's subscription bookkeeping and the writer's batching.

The gateway tests run these parts in a real runpushy; these pin what a test
through sockets cannot see: which string objects and frames are shared.
"""

import collections

from pushy.gateway.hub import Hub, url_size
from pushy.gateway.stats import Stats
from pushy.gateway.writer import WRITE_BATCH, _take_batch


class Subscriber:
    def __init__(self) -> None:
        self.urls: set[str] = set()
        self.url_bytes = 0

    def send(self, frame: bytes) -> None:
        pass


def test_connections_subscribed_to_one_url_share_one_string():
    hub = Hub(Stats())
    first, second = Subscriber(), Subscriber()
    url = "/api/shot/" + "x" * 2000
    copy = url[:10] + url[10:]  # equal, another object, as each message parses
    assert copy == url and copy is not url
    hub.subscribe(first, url)
    hub.subscribe(second, copy)
    (held_first,), (held_second,) = first.urls, second.urls
    assert held_first is held_second
    assert next(iter(hub.by_url)) is held_first


def test_url_bytes_follow_subscribe_and_unsubscribe():
    hub = Hub(Stats())
    connection = Subscriber()
    hub.subscribe(connection, "/a/é/")
    hub.subscribe(connection, "/a/é/")  # again: counted once
    hub.subscribe(connection, "/b/")
    assert connection.url_bytes == url_size("/a/é/") + 3 == 9  # é: 2 bytes
    hub.unsubscribe(connection, "/a/é/")
    hub.unsubscribe(connection, "/nothing/")
    assert connection.url_bytes == 3
    hub.remove(connection)
    assert connection.url_bytes == 0 and hub.subscriptions == 0


def test_a_batch_never_copies_a_big_frame():
    small = [b"s" * 100 for _ in range(3)]
    big = b"b" * (2 * WRITE_BATCH)
    queue = collections.deque([*small, big, *small])
    assert _take_batch(queue) == small  # stops before the big frame
    (alone,) = _take_batch(queue)
    assert alone is big  # written from the shared object
    assert _take_batch(queue) == small
    assert not queue


def test_filtered_lists_are_indexed_by_their_collection_while_held():
    hub = Hub(Stats())
    first, second = Subscriber(), Subscriber()
    hub.subscribe(first, "/api/order/?status=open")
    hub.subscribe(second, "/api/order/?status=open")
    hub.subscribe(second, "/api/order/")
    assert hub.filtered == {"/api/order/": {"/api/order/?status=open"}}
    hub.unsubscribe(first, "/api/order/?status=open")
    assert hub.filtered  # second still holds it
    hub.remove(second)
    assert hub.filtered == {} and hub.by_url == {}
