"""Unit tests of the interest's accounting (Redis Cluster, gateway/interest.py):
which channels a gateway holds for the subscribers of a URL that said it is one
object ("object": true, docs/protocol.md) and for those that did not, as they
come and go, through the hub as the gateway wires it. The real cluster's tests
(tests/test_cluster_object_hint.py) check the same against Redis."""

from __future__ import annotations

import gevent
import pytest

from pushy import redis_cluster
from pushy.gateway.hub import Hub
from pushy.gateway.interest import Batch, Interest
from pushy.gateway.stats import Stats
from tests.gateway.test_hub_unit import Subscriber

URL = "/api/shot/7/"
OBJECT = redis_cluster.object_channel(URL)
LISTS = [redis_cluster.collection_channel(n, URL) for n in range(12)]

pytestmark = pytest.mark.timeout(10)


@pytest.fixture
def wired():
    """A hub telling an Interest whose channels all go to one Batch."""
    batch = Batch()
    interest = Interest(redis_cluster.interest, lambda channel: batch, grace=0.05)
    hub = Hub(Stats())
    hub.interest = interest
    return hub, interest, batch


def held(interest: Interest) -> set[str]:
    return set(interest.counts)


def test_the_channels_of_each_kind():
    assert redis_cluster.interest(URL, True) == [OBJECT]
    assert sorted(redis_cluster.interest(URL)) == sorted([*LISTS, OBJECT])
    # A filtered list is never one object: the hint changes nothing.
    filtered = "/api/shot/?s=open"
    assert redis_cluster.interest(filtered, True) == redis_cluster.interest(filtered)


def test_a_hinted_subscriber_needs_the_objects_channel_only(wired):
    hub, interest, batch = wired
    first, second = Subscriber(), Subscriber()
    hub.subscribe(first, URL, object_only=True)
    hub.subscribe(second, URL, object_only=True)
    assert held(interest) == {OBJECT} and interest.counts[OBJECT] == 1
    assert batch.to_add == {OBJECT}
    hub.unsubscribe(first, URL)
    assert held(interest) == {OBJECT}
    hub.unsubscribe(second, URL)
    assert held(interest) == set() and set(interest.leaving) == {OBJECT}
    assert interest.kinds == {} and interest.since == {}


def test_hinted_and_unhinted_subscribers_need_the_union(wired):
    hub, interest, batch = wired
    hinted, plain = Subscriber(), Subscriber()
    hub.subscribe(hinted, URL, object_only=True)
    hub.subscribe(plain, URL)
    assert held(interest) == {OBJECT, *LISTS}
    assert interest.counts[OBJECT] == 2  # once per kind
    # The unhinted one leaves: the lists' channels go, after the grace.
    hub.unsubscribe(plain, URL)
    assert held(interest) == {OBJECT} and set(interest.leaving) == set(LISTS)
    batch.confirmed.update(batch.to_add)  # as the listener's answers would
    batch.to_add.clear()
    gevent.sleep(0.15)
    assert not interest.leaving and batch.to_remove == set(LISTS)
    assert OBJECT in batch.wanted and not set(LISTS) & batch.wanted
    # And the other way round: the hinted one leaving takes nothing.
    hub.subscribe(plain, URL)
    hub.unsubscribe(hinted, URL)
    assert held(interest) == {OBJECT, *LISTS} and interest.counts[OBJECT] == 1
    hub.remove(plain)
    assert held(interest) == set() and interest.kinds == {}


def test_a_subscription_widens_when_it_comes_again_unhinted(wired):
    hub, interest, _ = wired
    one = Subscriber()
    hub.subscribe(one, URL, object_only=True)
    hub.subscribe(one, URL, object_only=True)  # again: nothing changes
    assert held(interest) == {OBJECT}
    hub.subscribe(one, URL)  # widened; the object's channel never left
    assert held(interest) == {OBJECT, *LISTS} and not interest.leaving
    assert interest.kinds[URL] == 2  # only the unhinted kind now
    hub.subscribe(one, URL, object_only=True)  # never narrowed while subscribed
    assert held(interest) == {OBJECT, *LISTS}
    hub.unsubscribe(one, URL)
    assert held(interest) == set() and not hub.wide and not hub.by_url


def test_ready_waits_for_the_channels_its_kinds_need(wired):
    hub, interest, batch = wired
    batch.joined()
    hinted, plain = Subscriber(), Subscriber()
    hub.subscribe(hinted, URL, object_only=True)
    batch.heard(OBJECT)
    # Only the object's channel is waited for (the lists' are not wanted).
    assert interest.ready(URL, timeout=1.0)
    hub.subscribe(plain, URL)
    assert not interest.ready(URL, timeout=0.05)  # the lists' not confirmed
    for channel in LISTS:
        batch.heard(channel)
    assert interest.ready(URL, timeout=1.0)
    assert interest.ready("/nobody/", timeout=0.0)  # no subscriber: nothing


def test_without_an_interest_the_hint_is_not_kept():
    hub = Hub(Stats())
    one = Subscriber()
    hub.subscribe(one, URL, object_only=True)
    hub.subscribe(one, URL)
    assert hub.by_url == {URL: {one}} and not hub.wide
