"""Heartbeats and limits: pings, ping timeout, subscriptions, rate, handshake."""

import socket
import time

import pytest
import websocket

from tests.gateway.clients import Client, RawClient, frame
from tests.support.gateway import Gateway

pytestmark = [pytest.mark.timeout(60), pytest.mark.slow]

LIMITS = {
    "PING_INTERVAL": 1,
    "MAX_SUBSCRIPTIONS": 3,
    "RATE_LIMIT": 20,
    "HANDSHAKE_TIMEOUT": 1,
    "MAX_MESSAGE_BYTES": 1024,
    "MAX_SUBSCRIPTION_BYTES": 100,
}


@pytest.fixture(scope="module")
def limited(redis_server):
    with Gateway(redis_server.url, pushy_settings=LIMITS) as gw:
        yield gw


def test_subscriptions_past_the_limit_get_limit_errors(limited):
    client = Client(limited.ws_url)
    try:
        for n in range(3):
            client.subscribe(f"/api/shot/{n}/")
        client.subscribe("/api/shot/0/")  # again: not a new subscription
        answer = client.request(action="subscribe", url="/api/shot/9/")
        assert answer["type"] == "error"
        assert answer["code"] == "limit"
        assert answer["url"] == "/api/shot/9/"
        # Unsubscribing makes room; the connection stays usable throughout.
        client.request(action="unsubscribe", url="/api/shot/1/")
        client.subscribe("/api/shot/9/")
    finally:
        client.close()


def test_subscription_urls_past_max_subscription_bytes_get_limit_errors(limited):
    client = Client(limited.ws_url)
    # 41 bytes each in UTF-8 (26 characters): two fit in 100 bytes, not three.
    first, second, third = (f"/api/tag/{'é' * 15}{n}/" for n in range(3))
    try:
        client.subscribe(first)
        client.subscribe(second)
        answer = client.request(action="subscribe", url=third)
        assert answer["type"] == "error"
        assert answer["code"] == "limit"
        assert answer["url"] == third
        # Unsubscribing gives its bytes back.
        client.request(action="unsubscribe", url=first)
        client.subscribe(third)
        client.subscribe("/api/shot/1/")  # 94 bytes: still within 100
    finally:
        client.close()


def test_max_message_bytes_setting(limited):
    raw = RawClient("127.0.0.1", limited.port)
    raw.upgrade()
    raw.send(frame(0x1, b"x" * 1025))
    assert raw.recv_close()[0] == 1009
    raw.close()


def test_protocol_pings_arrive_and_a_silent_client_is_closed(limited):
    raw = RawClient("127.0.0.1", limited.port)
    raw.upgrade()
    assert raw.recv_frame()[0] == 0x9  # a ping, within PING_INTERVAL
    started = time.monotonic()
    # No pong and no message: closed when the next ping is due.
    assert raw.recv_close() == (1008, "ping timeout")
    assert time.monotonic() - started < 3
    raw.close()


def test_a_client_that_answers_pings_stays(limited):
    client = Client(limited.ws_url)  # websocket-client answers pings in recv()
    client.ws.settimeout(0.3)
    deadline = time.monotonic() + 3.5  # three ping intervals and more
    while time.monotonic() < deadline:
        with pytest.raises(websocket.WebSocketTimeoutException):
            client.recv()  # answers pings; nothing else arrives
    client.ws.settimeout(5)
    assert client.request(action="ping") == {"type": "pong"}
    client.close()


def test_inbound_rate_is_limited_by_slowing_down_not_dropping(limited):
    client = Client(limited.ws_url, timeout=10)
    try:
        started = time.monotonic()
        for _ in range(33):
            client.send(action="ping")
        answers = [client.recv() for _ in range(33)]
        elapsed = time.monotonic() - started
        assert answers == [{"type": "pong"}] * 33
        # Burst of 3, then 20 a second: 30 more take about 1.5 s.
        assert elapsed > 1.2, elapsed
    finally:
        client.close()


def test_handshake_timeout(limited):
    with socket.create_connection(("127.0.0.1", limited.port), timeout=5) as sock:
        sock.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\n")  # and never the rest
        started = time.monotonic()
        answer = b""
        while chunk := sock.recv(100):
            answer += chunk
        # Cut off (with pywsgi's 4xx at most) after HANDSHAKE_TIMEOUT.
        assert answer == b"" or answer.startswith(b"HTTP/1.1 4"), answer
        assert time.monotonic() - started < 3


def _answered_or_closed(sock: socket.socket) -> bool:
    try:
        sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)  # b"" (EOF) or a 4xx
        return True
    except BlockingIOError:
        return False
    except ConnectionError:
        return True


def test_a_request_trickled_byte_by_byte_is_cut_off(limited):
    request = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    with socket.create_connection(("127.0.0.1", limited.port), timeout=5) as sock:
        sock.setblocking(False)  # so the peek below never waits
        started = time.monotonic()
        for byte in request:
            try:
                sock.sendall(bytes([byte]))
            except ConnectionError:
                break
            if _answered_or_closed(sock):
                break
            time.sleep(0.2)  # pacing the bytes, not waiting for an event
        else:
            pytest.fail("the whole trickled request was accepted")
        assert time.monotonic() - started < 3


def test_a_client_waiting_on_its_authorization_is_not_taken_for_silent(redis_server):
    # Its reading is paused while the (slow) AUTHORIZE runs: its pongs wait
    # unread, which must not count as silence.
    settings = {"PING_INTERVAL": 1, "AUTHORIZE": "tests.gateway.authorizers.slow"}
    with Gateway(redis_server.url, pushy_settings=settings) as gw:
        client = Client(gw.ws_url, timeout=10)  # answers pings in recv()
        try:
            started = time.monotonic()
            client.subscribe("/api/slow/1/")
            assert time.monotonic() - started >= 2.5
            assert client.request(action="ping") == {"type": "pong"}
            assert gw.get_json("/stats")["ping_timeouts"] == 0
        finally:
            client.close()
