"""Several gateways on one Redis, and nginx in front of them, for real."""

import pytest

from tests.gateway.clients import Client, publish, shot_update
from tests.support.gateway import Gateway
from tests.support.nginx import Nginx, render
from tests.support.servers import free_port

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def two_gateways(pushy_redis):
    with Gateway(pushy_redis.url) as first, Gateway(pushy_redis.url) as second:
        yield first, second


def assert_next_is(client, pk):
    message = client.recv_until(lambda m: m.get("type") == "update")
    assert message["pk"] == pk, message


def test_every_gateway_delivers_each_update_once(pushy_redis, two_gateways):
    clients = [Client(gw.ws_url) for gw in two_gateways]
    try:
        for client in clients:
            client.subscribe("/api/shot/1/")
            client.subscribe("/api/shot/2/")
        # Both gateways are subscribed to Redis: PUBLISH reports two receivers.
        assert publish(pushy_redis.url, shot_update(1)) == 2
        publish(pushy_redis.url, shot_update(2))
        for client in clients:
            # Update 1 exactly once: the next update after it is update 2.
            assert_next_is(client, 1)
            assert_next_is(client, 2)
    finally:
        for client in clients:
            client.close()


def test_documented_nginx_config_is_rendered_with_the_given_ports():
    text = render([5001, 5002, 5003], 5000, 4999)
    assert text.count("server 127.0.0.1:500") == 4
    assert "server 127.0.0.1:5003 max_fails=0;" in text
    assert "listen 127.0.0.1:4999;" in text
    assert "8001" not in text and "8000" not in text


def test_nginx_proxies_the_websocket_under_a_path_prefix(pushy_redis, two_gateways):
    ports = [gw.port for gw in two_gateways]
    with Nginx(ports, site_port=free_port()) as nginx:
        ws_url = f"ws://127.0.0.1:{nginx.port}/pushy/ws"
        client = Client(ws_url, origin=f"http://127.0.0.1:{nginx.port}")
        try:
            client.subscribe("/api/shot/5/")
            publish(pushy_redis.url, shot_update(5, title="through nginx"))
            message = client.recv_until(lambda m: m.get("type") == "update")
            assert message["data"] == {"title": "through nginx"}
        finally:
            client.close()
