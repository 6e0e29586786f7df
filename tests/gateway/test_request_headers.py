"""The gateway's own request-header parser: unit tests, then a real gateway."""

from __future__ import annotations

import socket

import pytest

from pushy.gateway.handshake import (
    MAX_HEAD,
    MAX_HEADERS,
    Refusal,
    head_end,
    http_response,
    parse_request,
)

pytestmark = pytest.mark.timeout(30)


def parse(block: bytes, request_line: bytes = b"GET /ws?x=1 HTTP/1.1") -> dict:
    return parse_request(request_line + b"\r\n" + block, "10.0.0.1")


def test_the_request_line_and_the_peer_make_the_cgi_names():
    environ = parse(b"Host: a\r\n\r\n")
    assert environ["REQUEST_METHOD"] == "GET"
    assert environ["PATH_INFO"] == "/ws" and environ["QUERY_STRING"] == "x=1"
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["REMOTE_ADDR"] == "10.0.0.1"
    absolute = parse(b"\r\n", b"GET http://h:1/ws%2Fx HTTP/1.1")
    assert absolute["PATH_INFO"] == "/ws/x"


def test_names_are_case_insensitive_and_repeated_ones_are_joined():
    environ = parse(b"Host: a\r\nX-One: 1\r\nx-one: 2\r\n\r\nbody")
    assert environ["HTTP_HOST"] == "a"
    assert environ["HTTP_X_ONE"] == "1,2"


def test_values_are_stripped_and_folded_lines_join_their_header():
    environ = parse(b"Cookie:  a=1  \r\n\tb=2\r\nOther: x\r\n\r\n")
    assert environ["HTTP_COOKIE"] == "a=1 b=2"
    assert environ["HTTP_OTHER"] == "x"


def test_bare_newlines_end_lines_too():
    head = b"GET /ws HTTP/1.1\nHost: a\n\n"
    assert head_end(head + b"rest") == len(head)
    assert parse_request(head, "")["HTTP_HOST"] == "a"


def test_environ_names_drop_underscored_headers():
    environ = parse(b"X-Forwarded-For: 1.2.3.4\r\nX_Forwarded_For: 6.6.6.6\r\n\r\n")
    # An underscore would let a client spoof a header a proxy set with dashes.
    assert environ["HTTP_X_FORWARDED_FOR"] == "1.2.3.4"


@pytest.mark.parametrize(
    "block",
    [
        b"no colon here\r\n\r\n",
        b": no name\r\n\r\n",
        b" folded first\r\n\r\n",
        b"".join(b"H%d: v\r\n" % i for i in range(MAX_HEADERS + 1)) + b"\r\n",
    ],
)
def test_a_malformed_block_is_refused_with_400(block):
    with pytest.raises(Refusal) as info:
        parse(block)
    assert info.value.status.startswith("400 ")


@pytest.mark.parametrize(
    "line", [b"GET /ws", b"GET /ws HTTP/1.1 extra", b"GET /ws FTP/1.0", b""]
)
def test_a_malformed_request_line_is_refused_with_400(line):
    with pytest.raises(Refusal):
        parse(b"\r\n", line)


def test_answers_close_their_connection_and_count_their_body():
    answer = http_response("200 OK", "text/plain", b"hi", [("X-A", "1")])
    head, body = answer.split(b"\r\n\r\n")
    assert head.split(b"\r\n") == [
        b"HTTP/1.1 200 OK",
        b"Content-Type: text/plain",
        b"Content-Length: 2",
        b"Connection: close",
        b"X-A: 1",
    ]
    assert body == b"hi"


def upgrade_with(port: int, extra: bytes) -> str:
    request = (
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" + extra + b"\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        return sock.recv(4096).decode("latin-1")


def test_a_real_gateway_answers_400_to_a_malformed_header(shared_gateway):
    answer = upgrade_with(shared_gateway.port, b"this line has no colon\r\n")
    assert answer.startswith("HTTP/1.1 400 "), answer
    assert shared_gateway.get("/health")[0] == 200


def test_a_real_gateway_upgrades_with_folded_and_repeated_headers(shared_gateway):
    extra = b"X-Note: a\r\n b\r\nx-note: c\r\n"
    answer = upgrade_with(shared_gateway.port, extra)
    assert answer.startswith("HTTP/1.1 101 "), answer


def test_a_real_gateway_answers_431_to_a_head_that_never_ends(shared_gateway):
    answer = upgrade_with(shared_gateway.port, b"X-Big: " + b"x" * MAX_HEAD + b"\r\n")
    assert answer.startswith("HTTP/1.1 431 "), answer


def test_a_real_gateway_takes_a_head_sent_a_byte_at_a_time(shared_gateway):
    request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with socket.create_connection(
        ("127.0.0.1", shared_gateway.port), timeout=10
    ) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for byte in request:
            sock.send(bytes([byte]))
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
    assert answer.endswith(b'"redis": true}'), answer


def test_a_real_gateway_answers_head_without_a_body(shared_gateway):
    with socket.create_connection(
        ("127.0.0.1", shared_gateway.port), timeout=10
    ) as sock:
        sock.sendall(b"HEAD /stats HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n\r\n")
