"""The handshake's Origin check: which web pages may open a socket.

``ALLOWED_ORIGINS`` (``conf.allowed_origins()``) holds host patterns as
Django's ``ALLOWED_HOSTS`` does; the acceptor refuses an upgrade whose Origin
matches none of them (handshake.py gives the refusal).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.http.request import validate_host

# Origins of web pages; file://, 'null' (sandboxes, redirects), extensions and
# other schemes never pass, whatever their host.
ORIGIN_SCHEMES = ("http", "https")


def origin_allowed(origin: str | None, patterns: list[str]) -> bool:
    """Whether a handshake's Origin may connect (any port; no Origin: not a browser)."""
    if origin is None:
        return True
    try:
        parts = urlsplit(origin.strip())
        host = parts.hostname
    except ValueError:
        return False
    if parts.scheme not in ORIGIN_SCHEMES or not host:
        return False
    if ":" in host:  # urlsplit drops an IPv6 literal's brackets; patterns keep them.
        host = f"[{host}]"
    return validate_host(host, patterns)
