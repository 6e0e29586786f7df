"""The live admin: a pushed model's change form hears of other people's saves.

For every model in ``MODELS``, the admin's change form loads pushy.js and
``pushy/js/admin.js``, which subscribe to the object's ``get_api_url()`` and show
a banner ("changed by someone else at 14:02: reload before saving") when the
object is saved or deleted by anyone but this page. The page also joins its
own change form's URL (presence, docs/protocol.md): who else has this form
open is shown above it ("bob (since 14:02) is also editing this shot."); the
gateway lets only those who may GET that admin page join or hear it.

Nothing changes in the site's ModelAdmins: ``install()`` wraps
``ModelAdmin.render_change_form`` once, adding the two scripts to the form's
``media``, which every change form template renders. A ModelAdmin opts out
with ``pushy_live_admin = False``.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from django import forms
from django.db import models
from django.templatetags.static import static
from django.utils.html import format_html

from pushy import conf
from pushy.exceptions import InvalidUpdate
from pushy.rendering import current_version
from pushy.updates import build_update, model_label

__all__ = ["OPT_OUT_ATTRIBUTE", "install", "is_live", "live_media"]

logger = logging.getLogger(__name__)

# Set to False on a ModelAdmin to keep its change form as it was.
OPT_OUT_ATTRIBUTE = "pushy_live_admin"
_MARK = "_pushy_live_admin"


class _Script:
    """A ``<script>`` tag with attributes, for ``forms.Media`` (Django >= 4.1)."""

    def __init__(self, src: str, **attributes: str) -> None:
        self.src = src
        self.attributes = attributes

    def __html__(self) -> str:
        extra = "".join(
            format_html(' {}="{}"', name.replace("_", "-"), value)
            for name, value in self.attributes.items()
        )
        return format_html('<script src="{}"', self.src) + extra + "></script>"

    # Media merges and deduplicates its lists by equality.
    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Script) and self.__html__() == other.__html__()

    def __hash__(self) -> int:
        return hash(self.__html__())


def is_live(model_admin: Any, obj: models.Model | None) -> bool:
    """Whether this ModelAdmin's change form of ``obj`` gets the banner."""
    if obj is None or obj.pk is None:
        return False
    if getattr(model_admin, OPT_OUT_ATTRIBUTE, True) is False:
        return False
    return model_label(obj) in conf.model_labels()


def live_media(obj: models.Model, form_url: str | None = None) -> forms.Media:
    """The scripts that make ``obj``'s change form live (empty if it has no URL);
    with ``form_url`` (the change form's path), the page joins it for presence."""
    try:
        url = build_update(obj, "update").url
    except InvalidUpdate as e:
        logger.debug("no live admin for %s pk=%s: %s", model_label(obj), obj.pk, e)
        return forms.Media()
    except Exception:
        # The form must open even when the model's URL methods fail.
        logger.warning(
            "no live admin for %s pk=%s", model_label(obj), obj.pk, exc_info=True
        )
        return forms.Media()
    client = _Script(
        static("pushy/js/pushy.js"),
        data_pushy_autostart="",
        data_pushy_socket_url=conf.get("SOCKET_SERVER"),
        data_pushy_debug="true" if conf.get("DEBUG") else "false",
    )
    attributes = {
        "data_pushy_admin_url": url,
        "data_pushy_admin_name": str(obj._meta.verbose_name),
    }
    attributes["data_pushy_admin_version"] = str(current_version())
    if form_url:
        attributes["data_pushy_admin_presence"] = form_url
    banner = _Script(static("pushy/js/admin.js"), **attributes)
    return forms.Media(js=[client, banner])


def install() -> None:
    """Wrap ``ModelAdmin.render_change_form`` (once) to add ``live_media``."""
    from django.contrib.admin.options import ModelAdmin

    original = ModelAdmin.render_change_form
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    def render_change_form(
        self, request, context, add=False, change=False, form_url="", obj=None
    ):
        if change and is_live(self, obj):
            media = live_media(obj, request.path)
            context["media"] = context.get("media", forms.Media()) + media
        return original(self, request, context, add, change, form_url, obj)

    setattr(render_change_form, _MARK, True)
    ModelAdmin.render_change_form = render_change_form
