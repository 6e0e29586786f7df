"""``{% pushy_scripts %}``: load pushy.js and start it, without an inline script.

The configuration travels in the script tag's data attributes and pushy.js reads
them itself, so a page served under a Content-Security-Policy that forbids
inline scripts ('unsafe-inline') still works. When the template context has a
``csp_nonce`` (Django's CSP support, django-csp), the tag carries it too.
"""

from __future__ import annotations

from typing import Any

from django import template

from pushy import conf

register = template.Library()


@register.inclusion_tag("pushy/scripts.html", takes_context=True)
def pushy_scripts(context: template.Context) -> dict[str, Any]:
    """Render the client's ``<script>`` tag configured from ``PUSHY_SETTINGS``."""
    return {
        "socket_url": conf.get("SOCKET_SERVER"),
        "debug": "true" if conf.get("DEBUG") else "false",
        "csp_nonce": context.get("csp_nonce"),
    }
