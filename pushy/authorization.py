"""Who may subscribe to a URL: the functions ``PUSHY_SETTINGS["AUTHORIZE"]`` names.

An authorizer is a function ``f(user, url) -> bool``. The default, ``can_get``,
answers "could this user GET this URL from the site?" by running the URL's view
for a GET as that user; ``allow_all`` is the open behaviour of pushy before
0.2. The gateway calls them in its database thread pool, caches the answer per
(user, URL) for ``AUTHORIZATION_TTL`` seconds and shares it among that user's
connections (see docs/decisions.md, "Authorization by GET").

Nothing here imports gevent: these run in ordinary threads.
"""

from __future__ import annotations

import functools
import logging
from importlib import import_module
from io import BytesIO
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.core.handlers.wsgi import WSGIRequest
from django.core.signals import setting_changed
from django.http import Http404
from django.http.request import validate_host
from django.urls import Resolver404, resolve

from pushy import conf

__all__ = ["allow_all", "can_get"]

logger = logging.getLogger(__name__)


def allow_all(user: Any, url: str) -> bool:
    """Everyone may subscribe to everything (pushy's behaviour before 0.2).

    Only for sites whose pushed URLs and ``data`` are public.
    """
    return True


def can_get(user: Any, url: str, session: Any = None) -> bool:
    """Whether ``user`` could GET ``url`` from this site: its view answers 2xx.

    The URL's path is resolved with the project's URLconf (unresolvable: no),
    and its view is called with a GET request whose ``user`` and ``session``
    are the subscriber's; middleware does not run. A ``TemplateResponse`` is
    not rendered (its status is known before). ``Http404``,
    ``PermissionDenied``, a redirect (``LoginRequiredMixin`` sends anonymous
    users to the login page) or any other non-2xx answer means no; a view that
    raises anything else means no and is logged.
    """
    parts = urlsplit(url)
    path_info = _path_info(parts.path)
    if path_info is None:
        return False
    request = get_request(path_info, parts.query, user, session)
    try:
        match = resolve(request.path_info)  # decoded as Django decodes a request's
    except Resolver404:
        return False
    request.resolver_match = match
    try:
        response = match.func(request, *match.args, **match.kwargs)
    except (Http404, PermissionDenied):
        return False
    except Exception:
        logger.warning("the view of %s failed: refusing", url, exc_info=True)
        return False
    # Not response.close(): it would send request_finished, whose receivers
    # close this thread's database connections (the gateway's pool does that
    # after each job). A FileResponse's file closes when the response is freed.
    return 200 <= response.status_code < 300


def get_request(path_info: str, query: str, user: Any, session: Any) -> WSGIRequest:
    """A GET request for ``path_info`` as ``user``, as the site's handler builds."""
    host, port, secure = _server()
    script_name = settings.FORCE_SCRIPT_NAME or ""
    environ = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": script_name.rstrip("/"),
        # As a WSGI server passes them: the URL's bytes, percent-decoded, as latin-1.
        "PATH_INFO": unquote_to_bytes(path_info).decode("iso-8859-1"),
        "QUERY_STRING": query.encode().decode("iso-8859-1"),
        "SERVER_NAME": host,
        "SERVER_PORT": port,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": host,
        "HTTP_ACCEPT": "application/json, text/html;q=0.9, */*;q=0.8",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.input": BytesIO(),
        "wsgi.url_scheme": "https" if secure else "http",
    }
    if secure:
        environ["HTTPS"] = "on"
    request = WSGIRequest(environ)
    if session is None:
        session = _empty_session()
    request.session = session
    request.user = user
    return request


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
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]  # as Django's get_host()
    candidates = [parts.hostname or "localhost"]
    candidates += [h.lstrip(".") for h in allowed if h != "*" and h.lstrip(".")]
    for host in candidates:
        if validate_host(host, allowed):
            return host, port, secure
    return candidates[0], port, secure


def _empty_session() -> Any:
    return import_module(settings.SESSION_ENGINE).SessionStore()


def _forget_server(**kwargs: Any) -> None:
    _server.cache_clear()


setting_changed.connect(_forget_server, dispatch_uid="pushy.authorization.server")
