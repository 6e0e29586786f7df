"""``{% pushy_scripts %}``: one external script tag, configured by data attributes."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from django.template import Context, Template

TAG = "{% load pushy_tags %}{% pushy_scripts %}"


class ScriptTags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.inline: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self.scripts.append(dict(attrs))

    def handle_data(self, data):
        if self.lasttag == "script" and data.strip():
            self.inline.append(data)


def render(context: dict | None = None) -> ScriptTags:
    parser = ScriptTags()
    parser.feed(Template(TAG).render(Context(context or {})))
    return parser


def test_renders_one_external_script_and_no_inline_code(settings):
    settings.PUSHY_SETTINGS = {
        **settings.PUSHY_SETTINGS,
        "SOCKET_SERVER": "https://push.example.com/gw/",
        "DEBUG": True,
    }
    rendered = render()
    assert rendered.inline == []
    [script] = rendered.scripts
    assert script["src"] == "/static/pushy/js/pushy.js"
    assert "data-pushy-autostart" in script
    assert script["data-pushy-socket-url"] == "https://push.example.com/gw/"
    assert script["data-pushy-debug"] == "true"
    assert "nonce" not in script


@pytest.mark.parametrize("debug, expected", [(False, "false"), (True, "true")])
def test_debug_follows_the_setting(settings, debug, expected):
    settings.PUSHY_SETTINGS = {**settings.PUSHY_SETTINGS, "DEBUG": debug}
    [script] = render().scripts
    assert script["data-pushy-debug"] == expected


def test_follows_static_url(settings):
    settings.STATIC_URL = "https://cdn.example.com/assets/"
    [script] = render().scripts
    assert script["src"] == "https://cdn.example.com/assets/pushy/js/pushy.js"


def test_socket_url_is_escaped(settings):
    settings.PUSHY_SETTINGS = {
        **settings.PUSHY_SETTINGS,
        "SOCKET_SERVER": 'http://h/"><script>alert(1)</script>',
    }
    html = Template(TAG).render(Context({}))
    assert "<script>alert" not in html
    [script] = render().scripts
    assert script["data-pushy-socket-url"] == 'http://h/"><script>alert(1)</script>'


def test_carries_a_csp_nonce_when_the_page_has_one():
    [script] = render({"csp_nonce": "r4nd0m"}).scripts
    assert script["nonce"] == "r4nd0m"
