"""REDIS_URL naming a Redis Sentinel set: a real sentinel, a real primary."""

import re

import pytest
from django.core.checks import run_checks
from django.test import override_settings

from pushy.redis_clients import SentinelURL, parse_sentinel_url, redacted
from tests.gateway.clients import Client
from tests.support.gateway import Gateway
from tests.support.servers import SentinelServer
from tests.testapp.models import Shot

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def sentinel(pushy_redis):
    with SentinelServer(pushy_redis) as running:
        yield running


@pytest.mark.parametrize(
    "url, parsed",
    [
        (
            "redis+sentinel://s1:26380,s2/main",
            SentinelURL([("s1", 26380), ("s2", 26379)], "main"),
        ),
        (
            "rediss+sentinel://:pw@[::1]:5000/main/3",
            SentinelURL([("::1", 5000)], "main", 3, None, "pw", True),
        ),
        (
            "redis+sentinel://u:p%40ss@h:1/main/0",
            SentinelURL([("h", 1)], "main", 0, "u", "p@ss"),
        ),
    ],
)
def test_parse(url, parsed):
    assert parse_sentinel_url(url) == parsed


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel:///main",
        "redis+sentinel://h:26379/",
        "redis+sentinel://h:26379/main/x",
        "redis+sentinel://h:99999/main",
        "redis+sentinel://h/a/1/2",
    ],
)
def test_malformed_sentinel_urls_fail_the_checks(url):
    with override_settings(PUSHY_SETTINGS={"REDIS_URL": url}):
        errors = [m for m in run_checks() if m.id == "pushy.E007"]
    assert len(errors) == 1 and "REDIS_URL" in errors[0].msg


def test_redacted_drops_credentials():
    assert redacted("redis+sentinel://:pw@h1:1,h2:2/main/0") == (
        "redis+sentinel://h1:1,h2:2/main/0"
    )
    assert (
        redacted("rediss://user:pw@example.com:6380/1") == "rediss://example.com:6380/1"
    )


@pytest.mark.django_db(transaction=True)
def test_publisher_finds_the_primary_through_sentinel(settings, sentinel, published):
    settings.PUSHY_SETTINGS = {**settings.PUSHY_SETTINGS, "REDIS_URL": sentinel.url()}
    shot = Shot.objects.create(title="via sentinel")
    assert published.next()[1]["pk"] == shot.pk


@pytest.mark.django_db(transaction=True)
def test_gateway_listens_through_sentinel(pushy_redis, sentinel, settings):
    gateway = Gateway(pushy_redis.url, pushy_settings={"REDIS_URL": sentinel.url()})
    with gateway:
        assert "redis+sentinel://127.0.0.1" in gateway.startup_output
        client = Client(gateway.ws_url)
        try:
            client.subscribe("/api/shot/")
            # The web side publishes to the primary directly; the gateway got
            # there through the sentinel.
            shot = Shot.objects.create(title="to the gateway")
            update = client.recv_until(lambda m: m.get("type") == "update")
            assert (update["pk"], update["event"]) == (shot.pk, "create")
        finally:
            client.close()


# The cluster form shares the parsing of hosts and credentials.


def test_parse_cluster_url():
    from pushy.redis_cluster import ClusterURL, parse_cluster_url

    assert parse_cluster_url("rediss+cluster://u:p%40ss@a:7000,[::1]:7001") == (
        ClusterURL([("a", 7000), ("::1", 7001)], "u", "p@ss", True)
    )


@pytest.mark.parametrize(
    "url, words",
    [
        ("redis+cluster://", "no cluster host"),
        ("redis+cluster://a", "bad cluster address 'a'"),  # a node needs its port
        ("redis+cluster://a:7000/1", "only database 0"),
        ("redis+sentinel://a:7000", "not a redis+cluster or rediss+cluster URL"),
    ],
)
def test_malformed_cluster_urls_say_what_is_wrong(url, words):
    from pushy.redis_cluster import parse_cluster_url

    with pytest.raises(ValueError, match=re.escape(words)):
        parse_cluster_url(url)
