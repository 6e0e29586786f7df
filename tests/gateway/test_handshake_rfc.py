"""RFC 6455 section 4.1: the opening handshake is HTTP/1.1 (or later) with a Host."""

import json

import pytest

from tests.gateway.clients import RawClient, frame, handshake_request

pytestmark = pytest.mark.timeout(30)


def send_raw(gateway, request: bytes) -> str:
    raw = RawClient("127.0.0.1", gateway.port)
    try:
        raw.send(request)
        head = raw._read_until(b"\r\n\r\n").decode("latin-1")
        assert raw.at_eof(), "the connection must end after a refusal"
        return head
    finally:
        raw.close()


def test_http_1_0_upgrade_is_400(shared_gateway):
    request = handshake_request().replace(b" HTTP/1.1\r\n", b" HTTP/1.0\r\n", 1)
    head = send_raw(shared_gateway, request)
    assert head.startswith("HTTP/1.0 400") or head.startswith("HTTP/1.1 400"), head


def test_http_1_1_upgrade_without_host_is_400(shared_gateway):
    head = send_raw(shared_gateway, handshake_request(Host=None))
    assert head.split("\r\n")[0].endswith("400 Bad Request"), head


def test_empty_host_is_400(shared_gateway):
    head = send_raw(shared_gateway, handshake_request(Host=""))
    assert " 400 " in head.split("\r\n")[0], head


def test_http_1_1_with_host_is_upgraded(shared_gateway):
    raw = RawClient("127.0.0.1", shared_gateway.port)
    try:
        assert raw.upgrade().startswith("HTTP/1.1 101 ")
    finally:
        raw.close()


def test_refusals_are_counted(shared_gateway):
    before = shared_gateway.get_json("/stats")["handshakes_refused"]
    send_raw(shared_gateway, handshake_request(Host=None))
    assert shared_gateway.get_json("/stats")["handshakes_refused"] == before + 1


def _with_first_frames(shared_gateway, frames_after: bytes) -> RawClient:
    raw = RawClient("127.0.0.1", shared_gateway.port)
    # The handshake and the first frames in one write: they arrive together.
    raw.sock.sendall(handshake_request() + frames_after)
    assert raw._read_until(b"\r\n\r\n").startswith(b"HTTP/1.1 101 ")
    return raw


def test_frames_sent_with_the_handshake_are_answered(shared_gateway):
    ping = frame(0x1, json.dumps({"action": "ping"}).encode())
    raw = _with_first_frames(shared_gateway, ping + ping)
    assert raw.recv_json() == {"type": "pong"}
    assert raw.recv_json() == {"type": "pong"}
    raw.close()


def test_a_bad_frame_sent_with_the_handshake_closes_that_client_only(shared_gateway):
    raw = _with_first_frames(shared_gateway, frame(0x1, b"x", masked=False))
    assert raw.recv_close()[0] == 1002
    raw.close()
    assert shared_gateway.get("/health")[0] == 200
    assert "Traceback" not in shared_gateway.output()
