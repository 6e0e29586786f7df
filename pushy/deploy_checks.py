"""pushy's checks for ``manage.py check --deploy``: what a production site
should not run with, as warnings (ids ``pushy.W1xx``) with the fix in the hint.

They run only with ``--deploy`` and only once the settings themselves are
valid (``pushy/checks.py``); each can be silenced by id
(``SILENCED_SYSTEM_CHECKS``) where the site knows better.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Tags
from django.core.checks import Warning as CheckWarning
from django.core.checks import register as register_check
from django.http.request import validate_host

from pushy import conf
from pushy.redis_clients import CLUSTER_SCHEMES, SENTINEL_SCHEMES, parse_sentinel_url
from pushy.redis_cluster import parse_cluster_url

ID = "pushy.W{:03d}"
ALLOW_ALL = "pushy.authorization.allow_all"
LOCAL_HOSTS = ("localhost",)


def _warning(number: int, msg: str, hint: str) -> CheckWarning:
    return CheckWarning(msg, hint=hint, id=ID.format(number))


def check_deploy(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Every deployment warning that applies."""
    try:
        socket_server = urlsplit(conf.get("SOCKET_SERVER"))
    except (TypeError, ValueError):
        return []  # pushy.E006 says what is wrong with it
    found: list[CheckMessage] = []
    for check in (_client_debug, _authorize_all):
        found += check()
    found += _insecure_socket(socket_server)
    found += _redis_in_clear()
    found += _proxy_unknown(socket_server)
    found += _cookie_out_of_reach(socket_server)
    return found


def _client_debug() -> Iterator[CheckWarning]:
    if conf.get("DEBUG") is True:
        yield _warning(
            101,
            "PUSHY_SETTINGS['DEBUG'] is True: every visitor's browser logs "
            "pushy's traffic (the URLs subscribed, the updates) to its console.",
            "Set PUSHY_SETTINGS['DEBUG'] to False in production.",
        )


def site_is_https() -> bool:
    """Whether the site's settings say its pages are served over https."""
    return bool(
        settings.SECURE_SSL_REDIRECT
        or settings.SESSION_COOKIE_SECURE
        or settings.CSRF_COOKIE_SECURE
        or settings.SECURE_HSTS_SECONDS
    )


def _insecure_socket(socket_server: Any) -> Iterator[CheckWarning]:
    if socket_server.scheme == "http" and site_is_https():
        yield _warning(
            102,
            f"PUSHY_SETTINGS['SOCKET_SERVER'] is {conf.get('SOCKET_SERVER')!r}, "
            "http on an https site: browsers refuse ws:// from an https page "
            "(mixed content), and the session cookie would travel in clear.",
            "Serve the gateway behind the site's TLS proxy and set SOCKET_SERVER "
            "to its https:// URL (docs/deployment.md).",
        )


def _authorize_all() -> Iterator[CheckWarning]:
    if conf.get("AUTHORIZE") == ALLOW_ALL:
        yield _warning(
            103,
            "PUSHY_SETTINGS['AUTHORIZE'] is allow_all: anyone who connects may "
            "subscribe to any URL and receive every update with its data.",
            "Remove AUTHORIZE (the default asks the site's own views who may see "
            "each URL), or silence pushy.W103 if every pushed model is public.",
        )


def _redis_in_clear() -> Iterator[CheckWarning]:
    url = conf.get("REDIS_URL")
    hosts, password, tls = _redis_parts(url)
    remote = [host for host in hosts if not _is_local(host)]
    if remote and not password and not tls:
        yield _warning(
            104,
            f"PUSHY_SETTINGS['REDIS_URL'] reaches {', '.join(remote)} with no "
            "password and no TLS: anyone on the network path may read every "
            "update, or publish their own to every page.",
            "Require a password (requirepass or an ACL user, in the URL as "
            "redis://:PASSWORD@host) and use rediss:// off the local host.",
        )


def _redis_parts(url: Any) -> tuple[list[str], str | None, bool]:
    """Hosts, password and TLS of a REDIS_URL; nothing for a Unix socket."""
    if not isinstance(url, str) or url.startswith("unix://"):
        return [], None, False
    if url.split("://", 1)[0] in SENTINEL_SCHEMES:
        try:
            sentinel = parse_sentinel_url(url)
        except ValueError:
            return [], None, False
        hosts = [host for host, _ in sentinel.hosts]
        return hosts, sentinel.password, sentinel.ssl
    if url.split("://", 1)[0] in CLUSTER_SCHEMES:
        try:
            cluster = parse_cluster_url(url)
        except ValueError:
            return [], None, False
        return [host for host, _ in cluster.hosts], cluster.password, cluster.ssl
    parts = urlsplit(url)
    return [parts.hostname or ""], parts.password, parts.scheme == "rediss"


def _is_local(host: str) -> bool:
    if host in LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def behind_a_proxy(socket_server: Any) -> bool:
    """Whether browsers reach the gateway through a proxy, as far as the
    settings tell: the gateway speaks no TLS and serves no path prefix, so an
    https:// SOCKET_SERVER or one with a path is a proxy's address."""
    return socket_server.scheme == "https" or socket_server.path.strip("/") != ""


def _proxy_unknown(socket_server: Any) -> Iterator[CheckWarning]:
    per_client = conf.get("MAX_CONNECTIONS_PER_CLIENT")
    if per_client and behind_a_proxy(socket_server) and not conf.get("TRUSTED_PROXIES"):
        yield _warning(
            105,
            f"SOCKET_SERVER {conf.get('SOCKET_SERVER')!r} is a proxy's address, "
            "but PUSHY_SETTINGS['TRUSTED_PROXIES'] is empty: the gateway sees "
            "every browser as the proxy's address, so MAX_CONNECTIONS_PER_CLIENT "
            f"({per_client}) limits all visitors together, and authorization "
            "GETs see the proxy's address.",
            "Set TRUSTED_PROXIES to the proxy's address (e.g. ['127.0.0.1']) so its "
            "X-Forwarded-For gives each client's own.",
        )


def _cookie_out_of_reach(socket_server: Any) -> Iterator[CheckWarning]:
    host = socket_server.hostname
    if not host or conf.get("AUTHORIZE") == ALLOW_ALL:
        return
    if validate_host(host, settings.ALLOWED_HOSTS):
        return  # the site's own host: its cookies go there too
    domain = settings.SESSION_COOKIE_DOMAIN
    if domain and (
        host == domain.lstrip(".") or host.endswith("." + domain.lstrip("."))
    ):
        return
    yield _warning(
        106,
        f"The gateway's host {host!r} is not one of ALLOWED_HOSTS and "
        f"SESSION_COOKIE_DOMAIN ({domain!r}) does not cover it: browsers will not "
        "send it the session cookie, so every visitor is anonymous there.",
        "Serve the gateway under the site's host (a path behind the same proxy), "
        "or set SESSION_COOKIE_DOMAIN to the parent domain both share "
        "(docs/deployment.md, 'A gateway on its own subdomain').",
    )


def register() -> None:
    register_check(check_deploy, Tags.security, deploy=True)
