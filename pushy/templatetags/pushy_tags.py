"""pushy's template tags.

``{% pushy_scripts %}`` loads pushy.js and starts it, without an inline script:
the configuration travels in the script tag's data attributes and pushy.js reads
them itself, so a page served under a Content-Security-Policy that forbids
inline scripts ('unsafe-inline') still works. When the template context has a
``csp_nonce`` (Django's CSP support, django-csp), the tag carries it too.

``{% pushy_live obj %}...{% endpushy_live %}`` wraps part of a page in an element
that pushy.js keeps live by itself (``data-pushy-url`` and
``data-pushy-refresh``, docs/client.md); the first of a page loads the client,
unless ``{% pushy_scripts %}`` came before.

``{% pushy_presence target %}`` renders an element that pushy.js keeps filled
with who else is looking at ``target`` (``data-pushy-presence``, docs/client.md).
"""

from __future__ import annotations

import re
from typing import Any

from django import template
from django.db import models
from django.template.loader import render_to_string
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from pushy import conf
from pushy.exceptions import InvalidUpdate
from pushy.object_urls import model_collection_url, object_url
from pushy.rendering import current_version

register = template.Library()

TAG_NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9-]*\Z")
VOID_ELEMENTS = frozenset(
    "area base br col embed hr img input link meta param source track wbr".split()
)
# The version read once per rendering, shared by every pushy_live of a page.
VERSION_KEY = "pushy_live_version"
# Set once a rendering has loaded the client ({% pushy_scripts %} or the first
# {% pushy_live %}).
CLIENT_KEY = "pushy_client_loaded"


@register.inclusion_tag("pushy/scripts.html", takes_context=True)
def pushy_scripts(context: template.Context) -> dict[str, Any]:
    """Render the client's ``<script>`` tag configured from ``PUSHY_SETTINGS``."""
    _root(context)[CLIENT_KEY] = True
    return _script_context(context)


def _script_context(context: template.Context, defer: bool = False) -> dict[str, Any]:
    return {
        "socket_url": conf.get("SOCKET_SERVER"),
        "debug": "true" if conf.get("DEBUG") else "false",
        "csp_nonce": context.get("csp_nonce"),
        "defer": defer,
    }


def _root(context: template.Context) -> dict[str, Any]:
    """What every template of one rendering shares, included ones too (the
    render context's top is per template)."""
    return context.render_context.dicts[0]


def _client_once(context: template.Context) -> str:
    """The client's script tag, unless this rendering has had it already.

    Deferred: it runs once the page is parsed, when the elements it binds are
    there. pushy.js starts once however many times it is loaded.
    """
    root = _root(context)
    if root.get(CLIENT_KEY):
        return ""
    root[CLIENT_KEY] = True
    return render_to_string("pushy/scripts.html", _script_context(context, True))


@register.tag("pushy_live")
def do_pushy_live(parser: template.base.Parser, token: template.base.Token) -> LiveNode:
    """``{% pushy_live target [tag=] [id=] [refresh=] [attr=value ...] %}``.

    ``target`` is a model instance (its URL is subscribed to: ``get_api_url()``,
    else ``get_absolute_url()``), a QuerySet or a model class (the model's
    collection, however many members it has), or a URL string. The body is
    rendered inside an element (``tag``, default ``div``) whose attributes make
    pushy.js refresh it from the server when that URL changes:

    - ``id``: default ``pushy-<app_label>-<model_name>-<pk>`` for an instance,
      ``pushy-<the URL's words>`` for a URL; the same on every rendering, since
      the refresh finds the element again by its id;
    - ``object``: whether the URL is one object's (``data-pushy-object``: on
      a Redis Cluster its gateway holds one channel for it, not 13); default
      true for a model instance, false otherwise. ``object=False`` for an
      instance whose URL is also a list (another model's
      ``get_api_list_url()``): an object subscription hears no member;
    - ``refresh``: omitted or true, the page itself is fetched again; a URL
      string, that URL; false, no refresh (only ``data-pushy-url``: events for
      htmx or a script);
    - any other keyword is an attribute, ``_`` written ``-`` (``class="row"``,
      ``hx_get=url``); values are escaped, false and None leave it out.
    """
    bits = token.split_contents()
    if len(bits) < 2:
        raise template.TemplateSyntaxError(
            f"{bits[0]} needs a model instance, a QuerySet or a URL: "
            f"{{% {bits[0]} obj %}}"
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
        target = self.target.resolve(context)
        url, default_id = _url_and_id(target)
        attributes = {
            "id": options.pop("id", None) or default_id,
            "data-pushy-url": url,
            "data-pushy-object": _one_object(target, url, options.pop("object", None)),
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
        element = format_html("<{}{}>{}</{}>", tag, _attributes(attributes), body, tag)
        return _client_once(context) + element


@register.simple_tag(takes_context=True)
def pushy_presence(context: template.Context, target: Any, **options: Any) -> str:
    """``{% pushy_presence target [tag=] [attr=value ...] %}``: an empty element
    (``tag``, default ``span``) that joins ``target`` for presence while it is
    in the page and shows the others there (docs/client.md, "Presence").

    ``target`` is a model instance or a URL string (``request.path``: who else
    views this page), which the visitor must be allowed to subscribe to. Other
    keywords are attributes, as for ``pushy_live``.
    """
    tag = _tag_name(options.pop("tag", "span"))
    url, _ = _url_and_id(target)
    attributes = {"data-pushy-presence": url}
    for name, value in options.items():
        attributes[name.replace("_", "-")] = value
    element = format_html("<{}{}></{}>", tag, _attributes(attributes), tag)
    # Both parts are HTML already (a simple tag's str would be escaped).
    return mark_safe(_client_once(context) + element)


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
        return target, _words_id(target)
    if isinstance(target, models.Model) and target.pk is None:
        # A model class in the context: the template engine called it.
        target = type(target)
    if isinstance(target, models.QuerySet) or (
        isinstance(target, type) and issubclass(target, models.Model)
    ):
        try:
            url = model_collection_url(target)
        except (ValueError, InvalidUpdate) as e:
            raise template.TemplateSyntaxError(f"pushy_live: {e}") from e
        return url, _words_id(url)
    if not isinstance(target, models.Model):
        raise template.TemplateSyntaxError(
            "pushy_live needs a model instance, a QuerySet, a model class or a URL "
            f"string, got {target!r}"
        )
    try:
        url = object_url(target)
    except InvalidUpdate as e:
        raise template.TemplateSyntaxError(f"pushy_live: {e}") from e
    meta = target._meta
    pk = re.sub(r"[^A-Za-z0-9_-]", "-", str(target.pk))
    return url, f"pushy-{meta.app_label}-{meta.model_name}-{pk}"


def _one_object(target: Any, url: str, said: Any) -> bool:
    """Whether the element says its URL is one object's (``data-pushy-object``:
    on a Redis Cluster, one channel for it instead of 13): a model instance's
    is, unless ``object=False``; a URL string's when ``object=True``."""
    if said is None:
        return (
            isinstance(target, models.Model)
            and target.pk is not None
            and ("?" not in url)
        )
    if said and "?" in url:
        raise template.TemplateSyntaxError(
            f"pushy_live: object=True names one object, and {url} has a query "
            "string: it is a list"
        )
    return bool(said)


def _words_id(url: str) -> str:
    words = re.sub(r"[^A-Za-z0-9_]+", "-", url).strip("-")
    return f"pushy-{words}" if words else "pushy-root"


def _page_version(context: template.Context) -> int | None:
    """A version no earlier change exceeds, read once per rendering (Redis
    unreachable: 0, which always resyncs). pushy.js subscribes with it, so a
    change made between this rendering and the subscription comes as a resync,
    which refreshes."""
    cache = context.render_context
    if VERSION_KEY not in cache:
        cache[VERSION_KEY] = current_version()
    return cache[VERSION_KEY]
