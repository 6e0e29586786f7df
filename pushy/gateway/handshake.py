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


class GatewayHandler(WSGIHandler):
    """pywsgi's handler, plus the WebSocket upgrade for the gateway's paths."""

    _deadline: gevent.Timeout | None = None

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
