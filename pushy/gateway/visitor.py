"""Who is behind a WebSocket, as the site would see their GET: a ``Visitor``.

Built once per connection from its handshake, a ``Visitor`` carries what the
default authorization's GET must carry to get the site's own answer
(``pushy.authorization.can_get``): the session cookie and the other cookies,
the client's real address (the TCP peer's, or from a trusted proxy's
forwarding headers, as ``TRUSTED_PROXIES`` says), the Host and scheme of the
page (from the handshake's Origin), the languages and the user agent.

Two visitors are equal when the gateway's answers for them cannot differ:
same session key, same page host and scheme, same address. Decisions are
cached per identity, ``identity(principal)``: (page, principal, address), where
the principal is the logged-in user's pk, ``("session", key)`` for an
anonymous visitor with a stored session, or None for one without.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from django.http.request import split_domain_port

from pushy import authorization
from pushy.gateway.admission import TrustedProxies, parse_address
from pushy.gateway.session_user import session_key

# Forwarding headers passed on from a trusted proxy: the address chain, and
# the scheme and host of the socket's request (these two only when the page's
# own are not known from the Origin: they describe the socket, not the page).
FORWARDED_FOR = "HTTP_X_FORWARDED_FOR"
FORWARDED_SOCKET = ("HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST")
# Handshake headers the GET carries as the browser sent them.
PASSED_ON = ("HTTP_COOKIE", "HTTP_ACCEPT_LANGUAGE", "HTTP_USER_AGENT")


@dataclasses.dataclass(frozen=True)
class Visitor:
    """What the site would know of a WebSocket's client; immutable."""

    session_key: str | None = None
    page: str = ""  # "scheme://host[:port]" of the page, as the GET's Host says it
    address: str | None = None  # the client's IP; None: unknown (a Unix socket)
    host: str = dataclasses.field(default="", compare=False)
    port: str = dataclasses.field(default="", compare=False)
    secure: bool = dataclasses.field(default=False, compare=False)
    headers: tuple[tuple[str, str], ...] = dataclasses.field(default=(), compare=False)
    # The Host the WebSocket itself was sent to (the gateway's, as the browser
    # named it), for the advice of a refusal.
    socket_host: str = dataclasses.field(default="", compare=False)

    @classmethod
    def from_handshake(cls, environ: dict, trusted: TrustedProxies) -> Visitor:
        """The visitor behind a handshake's ``environ`` (handshake.parse_request)."""
        page = authorization.origin_server(environ.get("HTTP_ORIGIN"))
        from_origin = page is not None
        if page is None:
            page = authorization.host_server(environ.get("HTTP_HOST"))
        host, port, secure = page
        client = trusted.client(environ)
        headers = [(name, environ[name]) for name in PASSED_ON if name in environ]
        if _from_trusted_proxy(environ, trusted):
            names = (
                (FORWARDED_FOR,) if from_origin else (FORWARDED_FOR, *FORWARDED_SOCKET)
            )
            headers += [(name, environ[name]) for name in names if name in environ]
        return cls(
            session_key=session_key(environ.get("HTTP_COOKIE")),
            page=f"{'https' if secure else 'http'}://{host}",
            address=None if client is None else str(client),
            host=host,
            port=port,
            secure=secure,
            headers=tuple(headers),
            socket_host=environ.get("HTTP_HOST", ""),
        )

    @classmethod
    def default(cls) -> Visitor:
        """A visitor without a handshake: no cookie, the site's default Host."""
        host, port, secure = authorization._server()
        return cls(
            page=f"{'https' if secure else 'http'}://{host}",
            host=host,
            port=port,
            secure=secure,
        )

    def cookie_host_differs(self) -> bool:
        """Whether the page and the gateway have different host names: then the
        browser may not send the page's cookies to the gateway."""
        if not self.socket_host:
            return False
        page = split_domain_port(self.host.lower())[0]
        socket = split_domain_port(self.socket_host.lower())[0]
        return bool(page and socket) and page != socket

    def identity(self, principal: Any) -> tuple[str, Any, str | None]:
        """The key decisions are cached and shared under, for this visitor."""
        return (self.page, principal, self.address)

    def environ(self) -> dict[str, str]:
        """The WSGI environ entries of this visitor's GET (see ``can_get``)."""
        environ = {
            "HTTP_HOST": self.host,
            "SERVER_NAME": split_domain_port(self.host)[0] or self.host,
            "SERVER_PORT": self.port,
            "REMOTE_ADDR": self.address or "",
            "wsgi.url_scheme": "https" if self.secure else "http",
            **dict(self.headers),
        }
        if self.secure:
            environ["HTTPS"] = "on"
        return environ


def _from_trusted_proxy(environ: dict, trusted: TrustedProxies) -> bool:
    remote = environ.get("REMOTE_ADDR")
    if not remote:
        return trusted.unix
    return trusted.trusts(parse_address(remote))
