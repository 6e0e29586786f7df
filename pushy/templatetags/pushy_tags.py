"""pushy's template tags.

``{% pushy_scripts %}`` loads pushy.js and starts it, without an inline script:
the configuration travels in the script tag's data attributes and pushy.js reads
them itself, so a page served under a Content-Security-Policy that forbids
inline scripts ('unsafe-inline') still works. When the template context has a
``csp_nonce`` (Django's CSP support, django-csp), the tag carries it too.

``{% pushy_live obj %}...{% endpushy_live %}`` wraps part of a page in an element
that pushy.js keeps live by itself (``data-pushy-url`` and
``data-pushy-refresh``, docs/client.md).
"""

from __future__ import annotations

import re
from typing import Any

from django import template
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from pushy import conf
from pushy.rendering import current_version

register = template.Library()

TAG_NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9-]*\Z")
VOID_ELEMENTS = frozenset(
    "area base br col embed hr img input link meta param source track wbr".split()
)
# The version read once per rendering, shared by every pushy_live of a page.
VERSION_KEY = "pushy_live_version"


@register.inclusion_tag("pushy/scripts.html", takes_context=True)
def pushy_scripts(context: template.Context) -> dict[str, Any]:
    """Render the client's ``<script>`` tag configured from ``PUSHY_SETTINGS``."""
    return {
        "socket_url": conf.get("SOCKET_SERVER"),
        "debug": "true" if conf.get("DEBUG") else "false",
        "csp_nonce": context.get("csp_nonce"),
    }


@register.tag("pushy_live")
def do_pushy_live(parser: template.base.Parser, token: template.base.Token) -> LiveNode:
    """``{% pushy_live target [tag=] [id=] [refresh=] [attr=value ...] %}``.

    ``target`` is a model instance (its ``get_api_url()`` is subscribed to) or a
    URL string (a collection, or any URL). The body is rendered inside an
    element (``tag``, default ``div``) whose attributes make pushy.js refresh it
    from the server when that URL changes:

    - ``id``: default ``pushy-<app_label>-<model_name>-<pk>`` for an instance,
      ``pushy-<the URL's words>`` for a URL; the same on every rendering, since
      the refresh finds the element again by its id;
    - ``refresh``: omitted or true, the page itself is fetched again; a URL
      string, that URL; false, no refresh (only ``data-pushy-url``: events for
      htmx or a script);
    - any other keyword is an attribute, ``_`` written ``-`` (``class="row"``,
      ``hx_get=url``); values are escaped, false and None leave it out.
    """
    bits = token.split_contents()
    if len(bits) < 2:
        raise template.TemplateSyntaxError(
            f"{bits[0]} needs a model instance or a URL: {{% {bits[0]} obj %}}"
        )
    target = parser.compile_filter(bits[1])
    options = template.base.token_kwargs(bits[2:], parser)
    if len(options) != len(bits) - 2:
        raise template.TemplateSyntaxError(
            f"{bits[0]} takes one argument and keyword options (name=value), "
            f"got {' '.join(bits[1:])!r}"
        )
    nodelist = parser.parse(("endpushy_live",))
    parser.delete_first_token()
    return LiveNode(target, options, nodelist)


class LiveNode(template.Node):
    """The element of ``{% pushy_live %}`` around its rendered body."""

    def __init__(
        self,
        target: template.base.FilterExpression,
        options: dict[str, template.base.FilterExpression],
        nodelist: template.NodeList,
    ) -> None:
        self.target = target
        self.options = options
        self.nodelist = nodelist

    def render(self, context: template.Context) -> str:
        options = {name: value.resolve(context) for name, value in self.options.items()}
        tag = _tag_name(options.pop("tag", "div"))
        url, default_id = _url_and_id(self.target.resolve(context))
        attributes = {
            "id": options.pop("id", None) or default_id,
            "data-pushy-url": url,
        }
        refresh = options.pop("refresh", True)
        if refresh is not False and refresh is not None:
            # A URL to fetch, or the bare attribute: the page itself.
            attributes["data-pushy-refresh"] = (
                refresh if isinstance(refresh, str) else True
            )
        version = _page_version(context)
        if version is not None:
            attributes["data-pushy-version"] = str(version)
        for name, value in options.items():
            attributes[name.replace("_", "-")] = value
        body = self.nodelist.render(context)
        return format_html("<{}{}>{}</{}>", tag, _attributes(attributes), body, tag)


def _attributes(attributes: dict[str, Any]) -> str:
    """` name="value"` in order, escaped; True bare; False and None left out."""
    parts = []
    for name, value in attributes.items():
        if value is True:
            parts.append(format_html(" {}", name))
        elif value is not False and value is not None:
            parts.append(format_html(' {}="{}"', name, value))
    return mark_safe("".join(parts))  # each part escaped by format_html


def _tag_name(tag: Any) -> str:
    if not isinstance(tag, str) or not TAG_NAME.match(tag):
        raise template.TemplateSyntaxError(f"pushy_live: tag={tag!r} is not a tag name")
    if tag.lower() in VOID_ELEMENTS:
        raise template.TemplateSyntaxError(
            f"pushy_live: tag={tag!r} is a void element; it cannot hold content"
        )
    return tag


def _url_and_id(target: Any) -> tuple[str, str]:
    """The URL to subscribe to and the element's default id."""
    if isinstance(target, str):
        if not target:
            raise template.TemplateSyntaxError(
                "pushy_live: the URL is empty (an undefined variable?)"
            )
        words = re.sub(r"[^A-Za-z0-9_]+", "-", target).strip("-")
        return target, f"pushy-{words}" if words else "pushy-root"
    get_api_url = getattr(target, "get_api_url", None)
    meta = getattr(target, "_meta", None)
    if get_api_url is None or meta is None:
        raise template.TemplateSyntaxError(
            "pushy_live needs a model instance with get_api_url() or a URL string, "
            f"got {target!r}"
        )
    url = get_api_url()
    if not isinstance(url, str):
        raise template.TemplateSyntaxError(
            f"pushy_live: {meta.label_lower}.get_api_url() returned "
            f"{type(url).__name__}, not a str"
        )
    pk = re.sub(r"[^A-Za-z0-9_-]", "-", str(target.pk))
    return url, f"pushy-{meta.app_label}-{meta.model_name}-{pk}"


def _page_version(context: template.Context) -> int | None:
    """A version no earlier change exceeds, read once per rendering (Redis
    unreachable: 0, which always resyncs). pushy.js subscribes with it, so a
    change made between this rendering and the subscription comes as a resync,
    which refreshes."""
    cache = context.render_context
    if VERSION_KEY not in cache:
        cache[VERSION_KEY] = current_version()
    return cache[VERSION_KEY]
