"""The HTTP side of a WebSocket connection: validating and answering the upgrade.

gevent's pywsgi parses the request; ``GatewayHandler`` takes over requests for
the WebSocket path. A request that cannot be upgraded gets a plain 4xx answer,
one over a connection limit (admission.py) a 503; a valid one gets
``101 Switching Protocols`` and the socket is handed to the gateway.
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import logging
from typing import Any

import gevent
from gevent.pywsgi import WSGIHandler, WSGIServer

from pushy.gateway.logs import Throttled

logger = logging.getLogger(__name__)

# accept() errors that mean "no descriptor or memory for one more socket now".
OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

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

    def __call__(self, environ: dict, start_response: Any) -> list[bytes]:
        """Answer as a WSGI app would."""
        body = (self.message + "\n").encode()
        headers = [("Content-Type", "text/plain; charset=utf-8"), *self.headers]
        headers.append(("Content-Length", str(len(body))))
        start_response(self.status, headers)
        return [body]


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


# As http.client's limits for a request's headers.
MAX_HEADER_LINE = 65536
MAX_HEADERS = 100


class RequestHeaders:
    """A request's headers, as much of ``http.client.HTTPMessage`` as pywsgi uses.

    pywsgi parses headers with the email package, which cost the gateway about
    15 % of its CPU in a reconnect storm (measured with py-spy, 10,000 clients);
    a request's header block needs only lines split at the first colon.
    """

    __slots__ = ("items", "status", "_first")

    def __init__(self, items: list[tuple[str, str]], status: str = "") -> None:
        self.items = items
        # Non-empty when the block was malformed: pywsgi answers 400.
        self.status = status
        self._first: dict[str, str] | None = None

    def get(self, name: str, default: Any = None) -> Any:
        if self._first is None:
            first: dict[str, str] = {}
            for key, value in self.items:
                first.setdefault(key.lower(), value)
            self._first = first
        return self._first.get(name.lower(), default)

    getheader = get

    def __getitem__(self, name: str) -> Any:
        return self.get(name)

    def __delitem__(self, name: str) -> None:
        name = name.lower()
        self.items = [(k, v) for k, v in self.items if k.lower() != name]
        self._first = None

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None

    @property
    def headers(self) -> Any:
        for key, value in self.items:
            yield f"{key}: {value}\r\n"

    @property
    def typeheader(self) -> str | None:
        return self.get("content-type")


def read_headers(rfile: Any) -> RequestHeaders:
    """The header block of a request, up to its empty line (or end of stream)."""
    items: list[tuple[str, str]] = []
    while True:
        line = rfile.readline(MAX_HEADER_LINE + 1)
        if len(line) > MAX_HEADER_LINE:
            return RequestHeaders([], "header line too long")
        if line in (b"\r\n", b"\n", b""):
            return RequestHeaders(items)
        if len(items) >= MAX_HEADERS:
            return RequestHeaders([], "too many headers")
        text = line.decode("iso-8859-1")
        if text[:1] in " \t":
            if not items:
                return RequestHeaders([], "header block starts with a folded line")
            key, value = items[-1]  # obsolete line folding: one value
            items[-1] = (key, f"{value} {text.strip()}")
            continue
        name, colon, value = text.partition(":")
        if not colon or not name.strip():
            return RequestHeaders([], "malformed header line")
        items.append((name.strip(), value.strip()))


class GatewayHandler(WSGIHandler):
    """pywsgi's handler, plus the WebSocket upgrade for the gateway's paths."""

    _deadline: gevent.Timeout | None = None

    def MessageClass(self, rfile: Any, *args: Any) -> RequestHeaders:  # noqa: N802
        return read_headers(rfile)

    def _check_http_version(self) -> bool:
        # pywsgi's builds a tuple with a generator for every request.
        return self.request_version in ("HTTP/1.1", "HTTP/1.0") or (
            super()._check_http_version()
        )

    def _headers(self) -> Any:
        # pywsgi's formats each header as a line and splits it again.
        for key, value in self.headers.items:
            if "_" in key or key.lower() in ("content-type", "content-length"):
                continue  # as pywsgi: no underscores (spoofing), CGI names apart
            yield "HTTP_" + key.replace("-", "_").upper(), value

    def handle(self) -> None:
        # A request must arrive whole within HANDSHAKE_TIMEOUT: the socket timeout
        # catches a silent client, the deadline one that trickles bytes.
        self.socket.settimeout(self.server.gateway.limits.handshake_timeout)
        try:
            super().handle()
        except gevent.Timeout as timeout:
            if timeout is not self._deadline:
                raise

    def handle_one_request(self) -> Any:
        self._deadline = gevent.Timeout.start_new(
            self.server.gateway.limits.handshake_timeout
        )
        try:
            return super().handle_one_request()
        finally:
            self._deadline.cancel()

    def run_application(self) -> None:
        self._deadline.cancel()  # The request is in: no deadline for the answer.
        gateway = self.server.gateway
        if self.environ.get("PATH_INFO") not in gateway.websocket_paths:
            super().run_application()
            return
        try:
            key = check_upgrade(self.environ)
            gateway.check_origin(self.environ.get("HTTP_ORIGIN"))
            # Last: only a valid request from an allowed origin takes a place.
            client = gateway.admission.admit(self.environ)
        except Refusal as refusal:
            gateway.stats.handshakes_refused += 1
            if not refusal.logged:
                gateway.log_refusal(refusal, self.environ)
            self.application = refusal
            self.close_connection = True
            super().run_application()
            return
        try:
            self._switch_protocols(key)
            gateway.serve_websocket(self.socket, self.rfile, self.environ)
        finally:
            gateway.admission.release(client)

    def _switch_protocols(self, key: str) -> None:
        response = (
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n"
        )
        self.status, self.code = "101 Switching Protocols", 101
        self.close_connection = True
        self.socket.settimeout(None)
        self.socket.sendall(response.encode("ascii"))
        # Tells pywsgi a response went out, so an error later never makes it
        # write an HTTP 500 into the WebSocket stream.
        self.headers_sent = True
        self.response_length = len(response)


class GatewayServer(WSGIServer):
    """A pywsgi server that knows its gateway (the handler asks it for limits).

    Out of file descriptors (or kernel memory), ``accept()`` fails until some
    connection closes. gevent's server would report each failure through the
    hub (a traceback) and retry within a second, forever; this one pauses
    accepting instead (0.05 s, doubling up to 1 s while it lasts; waiting
    clients stay in the listen backlog), counts the pause in /metrics and
    logs at most once a minute.
    """

    handler_class = GatewayHandler
    min_pause = 0.05
    max_pause = 1.0

    def __init__(self, listener: Any, gateway: Any, **kwargs: Any) -> None:
        super().__init__(listener, gateway.wsgi_app, **kwargs)
        self.gateway = gateway
        self.pause = self.min_pause
        self._log_pause = Throttled(logger)

    def do_read(self) -> Any:
        try:
            accepted = super().do_read()
        except OSError as e:
            if e.errno not in OUT_OF_RESOURCES:
                raise
            self._pause_accepting(e)
            return None
        if accepted:
            self.pause = self.min_pause
        return accepted

    def _pause_accepting(self, error: OSError) -> None:
        self.gateway.stats.accept_pauses += 1
        self._log_pause.log(
            logging.ERROR,
            "cannot accept connections (%s): pausing accepts for up to %.0f s at a "
            "time; raise the open-file limit (LimitNOFILE) or lower MAX_CONNECTIONS",
            error.strerror or error,
            self.max_pause,
        )
        # As gevent's own error path does: stop the watcher, restart it from a timer.
        self.stop_accepting()
        self._timer = self.loop.timer(self.pause)
        self._timer.start(self._start_accepting_if_started)
        self.pause = min(self.max_pause, self.pause * 2)
