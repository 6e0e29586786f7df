"""The HTTP side of the gateway: a request's head, the upgrade, plain answers.

The gateway reads a request's head itself (acceptor.py) and ``parse_request``
turns it into a WSGI-style environ (only what the gateway uses). A request
that cannot be upgraded gets a plain 4xx answer, one over a connection limit
(admission.py) a 503; a valid one gets ``101 Switching Protocols`` and its
socket becomes a ``Connection``. ``/health``, ``/stats`` and ``/metrics`` get
a plain answer, and every plain answer closes its connection.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from urllib.parse import unquote, urlsplit

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
VERSION = "13"


class Refusal(Exception):
    """Raised when an upgrade request is refused; carries the HTTP answer."""

    def __init__(
        self,
        status: str,
        message: str,
        headers: tuple = (),
        detail: str | None = None,
        logged: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = list(headers)
        # For the gateway's log: what the client is not told (the allowed list).
        self.detail = detail or message
        # True when whoever refused has logged it already (the limits do).
        self.logged = logged

    def response(self) -> bytes:
        """The whole HTTP answer."""
        body = (self.message + "\n").encode()
        content_type = "text/plain; charset=utf-8"
        return http_response(self.status, content_type, body, self.headers)


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for a client's Sec-WebSocket-Key."""
    digest = hashlib.sha1(key.encode("ascii") + _GUID).digest()
    return base64.b64encode(digest).decode("ascii")


def _tokens(value: str) -> set[str]:
    return {token.strip().lower() for token in value.split(",")}


def _http_version(protocol: str) -> tuple[int, int]:
    """(1, 1) for "HTTP/1.1"; (0, 0) for anything unreadable."""
    name, _, version = protocol.partition("/")
    major, _, minor = version.partition(".")
    if name.upper() != "HTTP" or not major.isdigit() or not minor.isdigit():
        return (0, 0)
    return int(major), int(minor)


def check_upgrade(environ: dict) -> str:
    """The client's key if ``environ`` is a valid upgrade request; else Refusal."""
    if environ["REQUEST_METHOD"] != "GET":
        raise Refusal("405 Method Not Allowed", "use GET", [("Allow", "GET")])
    if "websocket" not in _tokens(environ.get("HTTP_UPGRADE", "")):
        # Not an upgrade request at all (a plain GET): say what this URL wants.
        raise Refusal(
            "426 Upgrade Required",
            "this is a WebSocket endpoint",
            [("Upgrade", "websocket"), ("Connection", "Upgrade")],
        )
    # RFC 6455 section 4.1: the opening handshake is HTTP/1.1 or later, with Host.
    if _http_version(environ.get("SERVER_PROTOCOL", "")) < (1, 1):
        raise Refusal("400 Bad Request", "a WebSocket upgrade needs HTTP/1.1")
    if not environ.get("HTTP_HOST", "").strip():
        raise Refusal("400 Bad Request", "Host header missing")
    if "upgrade" not in _tokens(environ.get("HTTP_CONNECTION", "")):
        raise Refusal("400 Bad Request", "Connection: Upgrade missing")
    if environ.get("HTTP_SEC_WEBSOCKET_VERSION") != VERSION:
        raise Refusal(
            "426 Upgrade Required",
            "unsupported WebSocket version",
            [("Sec-WebSocket-Version", VERSION)],
        )
    key = environ.get("HTTP_SEC_WEBSOCKET_KEY", "").strip()
    try:
        valid = len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        valid = False
    if not valid:
        raise Refusal("400 Bad Request", "bad Sec-WebSocket-Key")
    return key


# The most a request's head (request line and headers) may take, and the most
# headers it may have (http.client's limit).
MAX_HEAD = 64 * 1024
MAX_HEADERS = 100
_HEAD_END = re.compile(rb"\r?\n\r?\n")


def head_end(buffer: bytes, start: int = 0) -> int:
    """Where the head in ``buffer`` ends (after its empty line), or -1;
    ``start``: where to look from (a head read in pieces is searched once)."""
    found = _HEAD_END.search(buffer, start)
    return found.end() if found else -1


def parse_request(head: bytes, remote_addr: str) -> dict:
    """The WSGI-style environ of a request's ``head``; Refusal (400) if malformed.

    Header names with an underscore are dropped (a client could otherwise spoof
    one a proxy sets with dashes, as X_Forwarded_For); a repeated header's
    values are joined with commas; obsolete line folding joins a line to the
    header before it.
    """
    lines = head.decode("iso-8859-1").split("\n")
    parts = lines[0].rstrip("\r").split(" ")
    if len(parts) != 3 or not parts[2].upper().startswith("HTTP/"):
        raise Refusal("400 Bad Request", "malformed request line")
    method, target, protocol = parts
    path, _, query = target.partition("?")
    if "://" in path:  # the absolute form
        path = urlsplit(path).path
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": unquote(path, "latin-1"),
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": protocol,
        "REMOTE_ADDR": remote_addr,
    }
    for name, value in _header_items(lines[1:]):
        if "_" in name:
            continue
        key = "HTTP_" + name.replace("-", "_").upper()
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


def _header_items(lines: list[str]) -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    for line in lines:
        line = line.rstrip("\r")
        if not line:
            break
        if len(items) >= MAX_HEADERS:
            raise Refusal("400 Bad Request", "too many headers")
        if line[:1] in " \t":
            if not items:
                raise Refusal("400 Bad Request", "header block starts with a fold")
            name, value = items[-1]  # obsolete line folding: one value
            items[-1] = (name, f"{value} {line.strip()}")
            continue
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not name:
            raise Refusal("400 Bad Request", "malformed header line")
        items.append((name, value.strip()))
    return items


def switch_response(key: str) -> bytes:
    """The 101 answer that makes the connection a WebSocket."""
    return (
        "HTTP/1.1 101 Switching Protocols\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n"
    ).encode("ascii")


def http_response(
    status: str, content_type: str, body: bytes, headers: list | tuple = ()
) -> bytes:
    """A whole HTTP/1.1 answer that closes its connection."""
    lines = [
        f"HTTP/1.1 {status}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
