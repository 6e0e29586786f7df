"""RFC 6455 framing and handshakes, with hand-built frames on raw sockets."""

import json
import socket
import struct

import pytest

from tests.gateway.clients import Client, RawClient, frame, handshake_request

pytestmark = pytest.mark.timeout(60)

TEXT, BINARY, CLOSE, PING, PONG, CONT = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0
LIMIT = 64 * 1024  # the default MAX_MESSAGE_BYTES


@pytest.fixture
def raw(shared_gateway):
    client = RawClient("127.0.0.1", shared_gateway.port)
    head = client.upgrade()
    assert head.startswith("HTTP/1.1 101 "), head
    yield client
    client.close()


def ping_json() -> bytes:
    return frame(TEXT, b'{"action": "ping"}')


def test_handshake_answer_is_rfc_conformant(shared_gateway):
    client = Client(shared_gateway.ws_url)  # websocket-client verifies the accept key
    assert client.ws.getstatus() == 101
    client.close()


def test_oversized_frame_is_refused_from_its_header(raw):
    # Only the header is sent: the answer must not wait for 1 GiB of payload.
    raw.send(frame(TEXT, b"", length=1 << 30)[:10])
    assert raw.recv_close() == (1009, "message too big")
    assert raw.at_eof()


def test_fragments_are_counted_together(raw):
    half = b"x" * (LIMIT // 2 + 1)
    raw.send(frame(TEXT, half, fin=False))
    raw.send(frame(CONT, half, fin=False))
    assert raw.recv_close()[0] == 1009


def test_message_at_the_limit_is_accepted(raw):
    body = json.dumps({"action": "ping", "pad": "x"}).encode()
    padded = body[:-2] + b"x" * (LIMIT - len(body)) + body[-2:]
    assert len(padded) == LIMIT
    raw.send(frame(TEXT, padded))
    assert raw.recv_json() == {"type": "pong"}


def test_fragmented_message_with_a_ping_in_between(raw):
    message = b'{"action": "ping"}'
    raw.send(frame(TEXT, message[:5], fin=False))
    raw.send(frame(PING, b"hello"))
    raw.send(frame(CONT, message[5:11], fin=False))
    raw.send(frame(CONT, message[11:]))
    assert raw.recv_frame() == (PONG, b"hello")
    assert raw.recv_json() == {"type": "pong"}


@pytest.mark.parametrize(
    "data, code",
    [
        (frame(TEXT, b'{"action": "ping"}', masked=False), 1002),
        (frame(TEXT, b"{}", rsv=4), 1002),
        (frame(0x3, b"x"), 1002),
        (frame(0xB, b"x"), 1002),
        (frame(CONT, b"x"), 1002),
        (frame(PING, b"x" * 126), 1002),
        (frame(PING, b"x", fin=False), 1002),
        (frame(TEXT, b"\xff\xfe bad utf-8"), 1007),
        (frame(TEXT, b"ok", fin=False) + frame(TEXT, b"again"), 1002),
        (frame(BINARY, b"\x00\x01"), 1003),
        (frame(CLOSE, b"\x03"), 1002),
        (frame(CLOSE, struct.pack("!H", 1005)), 1002),
        (frame(CLOSE, struct.pack("!H", 1000) + b"\xff"), 1007),
    ],
    ids=[
        "unmasked",
        "reserved-bits",
        "opcode-3",
        "opcode-11",
        "orphan-continuation",
        "long-ping",
        "fragmented-ping",
        "invalid-utf8",
        "text-inside-fragments",
        "binary",
        "close-of-one-byte",
        "close-reserved-code",
        "close-reason-not-utf8",
    ],
)
def test_protocol_errors_close_with_the_right_code(raw, data, code):
    raw.send(data)
    assert raw.recv_close()[0] == code
    assert raw.at_eof()


def test_invalid_utf8_split_across_fragments(raw):
    snowman = "☃".encode()
    raw.send(frame(TEXT, b'"' + snowman[:2], fin=False))
    raw.send(frame(CONT, b"\xff" + b'"'))
    assert raw.recv_close()[0] == 1007


def test_valid_utf8_split_across_fragments(raw):
    message = '{"action": "subscribe", "url": "/api/tag/☃/"}'.encode()
    cut = message.index("☃".encode()) + 1
    raw.send(frame(TEXT, message[:cut], fin=False))
    raw.send(frame(CONT, message[cut:]))
    assert raw.recv_json() == {"type": "subscribed", "url": "/api/tag/☃/"}


@pytest.mark.parametrize("code", [1000, 1001, 3000, 4321])
def test_client_close_code_is_echoed(raw, code):
    raw.send(frame(CLOSE, struct.pack("!H", code) + b"bye"))
    assert raw.recv_close()[0] == code
    assert raw.at_eof()


def test_empty_close_is_answered_with_an_empty_close(raw):
    raw.send(frame(CLOSE))
    assert raw.recv_close() == (None, "")


def test_protocol_ping_gets_its_payload_back(raw):
    raw.send(frame(PING, b"abc"))
    assert raw.recv_frame() == (PONG, b"abc")
    raw.send(frame(PONG, b"unsolicited"))  # allowed, ignored
    raw.send(ping_json())
    assert raw.recv_json() == {"type": "pong"}


def test_large_masked_message_is_unmasked_correctly(shared_gateway):
    client = Client(shared_gateway.ws_url)
    url = "/api/" + "u" * 2000 + "/"
    assert client.request(action="subscribe", url=url)["url"] == url
    client.close()


def _http(port: int, request: bytes) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.decode("latin-1")


@pytest.mark.parametrize(
    "headers, status",
    [
        ({"Method": "POST"}, "405"),
        ({"Upgrade": None}, "426"),
        ({"Connection": "keep-alive"}, "400"),
        ({"Upgrade": "h2c"}, "426"),
        ({"Sec-WebSocket-Version": "8"}, "426"),
        ({"Sec-WebSocket-Key": None}, "400"),
        ({"Sec-WebSocket-Key": "not base64!"}, "400"),
        ({"Sec-WebSocket-Key": "c2hvcnQ="}, "400"),
        ({"Origin": "http://evil.test"}, "403"),
        ({"Origin": "null"}, "403"),
        ({"Origin": "http://[::1"}, "403"),
        ({"Origin": "http://example.com\x7f.evil"}, "403"),
    ],
)
def test_bad_handshakes_get_a_4xx(shared_gateway, headers, status):
    answer = _http(shared_gateway.port, handshake_request(**headers))
    assert answer.split(" ")[1] == status, answer
    if headers.get("Sec-WebSocket-Version") == "8":
        assert "Sec-WebSocket-Version: 13" in answer
    assert "Traceback" not in shared_gateway.output()


def test_garbage_request_line_gets_400(shared_gateway):
    answer = _http(shared_gateway.port, b"\x16\x03\x01 garbage\r\n\r\n")
    assert answer.split(" ")[1] == "400", answer


@pytest.mark.parametrize(
    "origin",
    ["http://localhost:3000", "https://example.com", "http://127.0.0.1:8000", None],
)
def test_allowed_origins_any_port_and_no_origin(shared_gateway, origin):
    client = RawClient("127.0.0.1", shared_gateway.port)
    head = client.upgrade(Origin=origin)
    assert head.startswith("HTTP/1.1 101 "), head
    client.close()
