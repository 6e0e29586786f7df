"""The gateway's own request-header parser: unit tests, then a real gateway."""

from __future__ import annotations

import io
import socket

import pytest

from pushy.gateway.handshake import MAX_HEADERS, RequestHeaders, read_headers

pytestmark = pytest.mark.timeout(30)


def parse(block: bytes) -> RequestHeaders:
    return read_headers(io.BytesIO(block))


def test_names_are_case_insensitive_and_the_first_of_a_name_wins():
    headers = parse(b"Host: a\r\nX-One: 1\r\nx-one: 2\r\n\r\nbody")
    assert headers.status == ""
    assert headers.get("HOST") == "a"
    assert headers["x-ONE"] == "1"
    assert headers.get("missing", "d") == "d" and headers["missing"] is None
    assert "host" in headers and "nope" not in headers


def test_values_are_stripped_and_folded_lines_join_their_header():
    headers = parse(b"Cookie:  a=1  \r\n\tb=2\r\nOther: x\r\n\r\n")
    assert headers.get("cookie") == "a=1 b=2"
    assert headers.get("other") == "x"


def test_delete_removes_every_header_of_a_name():
    headers = parse(b"Content-Length: 3\r\ncontent-length: 4\r\nA: b\r\n\r\n")
    del headers["Content-Length"]
    assert headers.get("content-length") is None
    assert headers.items == [("A", "b")]


def test_the_end_of_the_stream_ends_the_block():
    assert parse(b"A: b\r\n").items == [("A", "b")]


@pytest.mark.parametrize(
    "block",
    [
        b"no colon here\r\n\r\n",
        b": no name\r\n\r\n",
        b" folded first\r\n\r\n",
        b"A: " + b"x" * 70000 + b"\r\n\r\n",
        b"".join(b"H%d: v\r\n" % i for i in range(MAX_HEADERS + 1)) + b"\r\n",
    ],
)
def test_a_malformed_block_has_a_status(block):
    headers = parse(block)
    assert headers.status and headers.items == []


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


def test_environ_names_drop_underscored_headers_and_the_cgi_ones():
    from pushy.gateway.handshake import GatewayHandler

    handler = GatewayHandler.__new__(GatewayHandler)  # only _headers() is used
    handler.headers = parse(
        b"X-Forwarded-For: 1.2.3.4\r\nX_Forwarded_For: 6.6.6.6\r\n"
        b"Content-Type: text/plain\r\nContent-Length: 0\r\nCookie: a=1\r\n\r\n"
    )
    # An underscore would let a client spoof a header a proxy set with dashes.
    assert list(handler._headers()) == [
        ("HTTP_X_FORWARDED_FOR", "1.2.3.4"),
        ("HTTP_COOKIE", "a=1"),
    ]
