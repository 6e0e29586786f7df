"""Who may subscribe to a URL: the functions ``PUSHY_SETTINGS["AUTHORIZE"]`` names.

An authorizer is a function ``f(user, url) -> bool``. The default, ``can_get``,
answers "could this visitor GET this URL from the site?" by serving a GET for
it through the project's middleware and the URL's view (``pushy.site_get``),
with the visitor's session, cookies, address and host; ``allow_all`` is the
open behaviour of pushy before 0.2. The gateway calls them in its database
thread pool, caches the answer per visitor identity and URL for
``AUTHORIZATION_TTL`` seconds and shares it among the connections of that
identity (see docs/decisions.md, "Authorization by GET" and "The site's own
answer").

Nothing here imports gevent: these run in ordinary threads.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from io import BytesIO
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

from django.conf import settings
from django.core.handlers.wsgi import WSGIRequest
from django.core.signals import setting_changed
from django.http.request import split_domain_port, validate_host
from django.utils.module_loading import import_string

from pushy import conf, sessions, site_get

__all__ = ["Answer", "allow_all", "ask", "can_get", "configured", "get_answer"]

logger = logging.getLogger(__name__)

ACCEPT = "application/json, text/html;q=0.9, */*;q=0.8"


def allow_all(user: Any, url: str) -> bool:
    """Everyone may subscribe to everything (pushy's behaviour before 0.2).

    Only for sites whose pushed URLs and ``data`` are public.
    """
    return True


def can_get(
    user: Any, url: str, session: Any = None, environ: dict | None = None
) -> bool:
    """Whether ``user`` could GET ``url`` from this site: it answers 2xx.

    The GET goes through the project's ``MIDDLEWARE`` (less Django's cache
    middleware) and the view, as the site's handler serves it
    (``pushy.site_get``), and nothing it does is kept. ``session`` is the
    visitor's session as the gateway loaded it (the site's ``SessionMiddleware``
    hands the request a read-only copy, so its user is the one
    ``AuthenticationMiddleware`` sees); without one, a session logged in as
    ``user``. ``environ`` is what the visitor's handshake says of the request
    (``pushy.gateway.visitor.Visitor.environ()``): its address, Host, cookies,
    languages. A redirect (to the login page), 403, 404, any other non-2xx
    answer, or an exception (logged) means no.
    """
    return get_answer(user, url, session, environ).allowed


def configured() -> Callable[..., bool]:
    """The authorizer ``AUTHORIZE`` names; ``can_get`` when it names none."""
    path = conf.get("AUTHORIZE")
    return import_string(path) if path else can_get


def ask(
    authorize: Callable[..., bool],
    user: Any,
    url: str,
    session: Any = None,
    environ: dict | None = None,
) -> tuple[bool, Answer | None]:
    """Whether ``authorize`` lets ``user`` subscribe to ``url``; and, from the
    default authorizer, the site's whole answer (None from any other).

    The one place where ``can_get`` is told apart from other authorizers (the
    gateway and ``pushy_explain`` both ask through it): it alone is given the
    visitor's session and request (``environ``), and its answer says why (a
    redirect to the login page, a 404). Others are called as ``f(user, url)``.
    Whatever the authorizer raises is raised.
    """
    if authorize is can_get:
        answer = get_answer(user, url, session, environ)
        return answer.allowed, answer
    return bool(authorize(user, url)), None


@dataclasses.dataclass(frozen=True)
class Answer:
    """What the site answered a GET: its status (None: not served), and why."""

    status: int | None
    view: Any = None  # the resolved view, when the URL resolved
    error: BaseException | None = None  # what a view or middleware raised
    location: str | None = None  # where a redirect sent it

    @property
    def allowed(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def said(self) -> str:
        """The answer in a few words, for a refusal: "answered 302 to
        /accounts/login/?next=...", "answered 404", "is outside
        FORCE_SCRIPT_NAME"."""
        if self.status is None:
            return "is outside FORCE_SCRIPT_NAME"
        if self.location:
            return f"answered {self.status} to {self.location}"
        return f"answered {self.status}"


def get_answer(
    user: Any, url: str, session: Any = None, environ: dict | None = None
) -> Answer:
    """The site's answer to a GET of ``url`` (see ``can_get``)."""
    parts = urlsplit(url)
    path_info = _path_info(parts.path)
    if path_info is None:
        return Answer(None)
    request = get_request(path_info, parts.query, user, session, environ)
    response = site_get.get(request)
    match = getattr(request, "resolver_match", None)
    return Answer(
        response.status_code,
        match.func if match is not None else None,
        request.environ.get(site_get.EXCEPTION_ENVIRON_KEY),
        response.get("Location") if 300 <= response.status_code < 400 else None,
    )


def get_request(
    path_info: str,
    query: str,
    user: Any,
    session: Any,
    environ: dict | None = None,
) -> WSGIRequest:
    """A GET request for ``path_info``, as the site's WSGI server would pass it.

    ``environ`` (the visitor's) overrides the defaults: the Host of
    ``_server()``, address 127.0.0.1, no cookies. The read-only session the
    site's ``SessionMiddleware`` will hand out travels in the environ.
    """
    host, port, secure = _server()
    script_name = settings.FORCE_SCRIPT_NAME or ""
    base = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": script_name.rstrip("/"),
        # As a WSGI server passes them: the URL's bytes, percent-decoded, as latin-1.
        "PATH_INFO": unquote_to_bytes(path_info).decode("iso-8859-1"),
        "QUERY_STRING": query.encode().decode("iso-8859-1"),
        "SERVER_NAME": host,
        "SERVER_PORT": port,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": host,
        # JSON first: an API view (DRF) answers what pushy's client fetches,
        # and one without an HTML renderer would answer text/html with 406.
        "HTTP_ACCEPT": ACCEPT,
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.input": BytesIO(),
        "wsgi.url_scheme": "https" if secure else "http",
    }
    if secure:
        base["HTTPS"] = "on"
    if environ:
        base.update(environ)
    if session is None:
        base[site_get.SESSION_ENVIRON_KEY] = sessions.logged_in(user)
    else:
        base[site_get.SESSION_ENVIRON_KEY] = sessions.read_only(session)
    return WSGIRequest(base)


def _path_info(path: str) -> str | None:
    """The path the URLconf sees: without ``FORCE_SCRIPT_NAME``; None if outside it."""
    prefix = (settings.FORCE_SCRIPT_NAME or "").rstrip("/")
    if not prefix:
        return path or "/"
    if path == prefix or path.startswith(prefix + "/"):
        return path[len(prefix) :] or "/"
    return None


@functools.cache
def _server() -> tuple[str, str, bool]:
    """A Host that passes ``request.get_host()``, its port, and whether https.

    The host of ``SOCKET_SERVER`` when ``ALLOWED_HOSTS`` accepts it (it is
    usually the site's own), else the first concrete ``ALLOWED_HOSTS`` entry.
    """
    parts = urlsplit(conf.get("SOCKET_SERVER"))
    secure = parts.scheme == "https"
    port = str(parts.port or (443 if secure else 80))
    allowed = allowed_hosts()
    candidates = [parts.hostname or "localhost"]
    candidates += [h.lstrip(".") for h in allowed if h != "*" and h.lstrip(".")]
    for host in candidates:
        if validate_host(host, allowed):
            return host, port, secure
    return candidates[0], port, secure


def allowed_hosts() -> list[str]:
    """The hosts ``request.get_host()`` accepts (DEBUG's defaults included)."""
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]  # as Django's get_host()
    return allowed


def origin_server(origin: str | None) -> tuple[str, str, bool] | None:
    """The Host (with its port, as a browser sends it), port and https-ness of
    the page a WebSocket handshake's Origin names; None when there is no
    Origin, or its host does not pass ``ALLOWED_HOSTS``."""
    parts = _origin_parts(origin)
    if parts is None:
        return None
    secure = parts.scheme == "https"
    host = parts.netloc.lower()
    domain, port = split_domain_port(host)
    if not domain or not validate_host(domain, allowed_hosts()):
        return None
    return host, port or ("443" if secure else "80"), secure


def host_server(host: str | None) -> tuple[str, str, bool]:
    """Like ``origin_server()`` for a request's Host header (the scheme is
    ``SOCKET_SERVER``'s); ``_server()`` when it does not pass."""
    _, _, secure = _server()
    if host:
        host = host.lower()
        domain, port = split_domain_port(host)
        if domain and validate_host(domain, allowed_hosts()):
            return host, port or ("443" if secure else "80"), secure
    return _server()


def _origin_parts(origin: str | None) -> Any:
    if not origin:
        return None
    try:
        parts = urlsplit(origin.strip())
        parts.port  # noqa: B018 -- raises ValueError for a bad port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts


def _forget_server(**kwargs: Any) -> None:
    _server.cache_clear()


setting_changed.connect(_forget_server, dispatch_uid="pushy.authorization.server")
