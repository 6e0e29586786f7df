"""pushy.live_admin's choices, without a browser (tests/browser/test_live_admin.py
shows the banner in Chromium on the demo site's admin)."""

from __future__ import annotations

import pytest
from django.contrib.admin.options import ModelAdmin

from pushy import live_admin, rendering
from tests.testapp.models import NoUrl, Shot, Unpushed

pytestmark = pytest.mark.timeout(30)


class OptedOut:
    pushy_live_admin = False


def test_a_saved_object_of_a_pushed_model_is_live():
    assert live_admin.is_live(object(), Shot(pk=3, title="x"))


@pytest.mark.parametrize(
    ("model_admin", "obj"),
    [
        (OptedOut(), Shot(pk=3)),  # the documented opt-out
        (object(), Shot()),  # an add form: nothing to watch yet
        (object(), None),
        (object(), Unpushed(pk=1)),  # not in MODELS
    ],
)
def test_not_live(model_admin, obj):
    assert not live_admin.is_live(model_admin, obj)


def test_the_media_load_pushy_then_the_banner_for_the_objects_url():
    html = str(live_admin.live_media(Shot(pk=3, title="x")))
    client, banner = html.splitlines()
    assert 'src="/static/pushy/js/pushy.js"' in client
    assert 'data-pushy-socket-url="http://localhost:8888/"' in client
    assert "data-pushy-autostart" in client
    assert 'src="/static/pushy/js/admin.js"' in banner
    assert 'data-pushy-admin-url="/api/shot/3/"' in banner
    assert 'data-pushy-admin-name="shot"' in banner


def test_a_model_without_url_gets_no_media_and_the_form_still_opens():
    assert str(live_admin.live_media(NoUrl(pk=1))) == ""


def test_install_wraps_render_change_form_once():
    live_admin.install()
    wrapped = ModelAdmin.render_change_form
    live_admin.install()
    assert ModelAdmin.render_change_form is wrapped
    assert wrapped._pushy_live_admin


def test_the_banner_script_carries_the_version_the_form_is_from(settings):
    before = rendering.current_version()
    html = str(live_admin.live_media(Shot(pk=3, title="x")))
    version = int(html.split('data-pushy-admin-version="')[1].split('"')[0])
    assert before is not None and version >= before


def test_without_redis_the_form_still_opens_with_a_version_that_resyncs(settings):
    settings.PUSHY_SETTINGS = {
        **settings.PUSHY_SETTINGS,
        "REDIS_URL": "redis://127.0.0.1:1/0",
    }
    # 0 is below every epoch's floor: the form is told to resync as it
    # subscribes, rather than miss a save made while Redis could not say.
    assert rendering.current_version() == rendering.UNKNOWN == 0
    html = str(live_admin.live_media(Shot(pk=3, title="x")))
    assert "data-pushy-admin-url" in html
    assert 'data-pushy-admin-version="0"' in html


def test_the_banner_script_names_the_form_to_join_for_presence():
    form = "/admin/testapp/shot/3/change/"
    html = str(live_admin.live_media(Shot(pk=3, title="x"), form))
    assert f'data-pushy-admin-presence="{form}"' in html
    # Without the form's path (called on its own), no presence.
    assert "data-pushy-admin-presence" not in str(
        live_admin.live_media(Shot(pk=3, title="x"))
    )
