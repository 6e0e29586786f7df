import pytest

from pushy import conf


def test_defaults_apply_to_missing_keys(settings):
    settings.PUSHY_SETTINGS = {"MODELS": ["testapp.shot"]}
    assert conf.get("CHANNEL_PREFIX") == "pushy_"
    assert conf.get("MAX_MESSAGE_BYTES") == 65536
    assert conf.get("PING_INTERVAL") == 25
    assert conf.get("REDIS_URL") == "redis://localhost:6379/0"


def test_missing_setting_means_all_defaults(settings):
    del settings.PUSHY_SETTINGS
    assert conf.get("MODELS") == ()
    assert conf.model_labels() == frozenset()


def test_cache_is_reset_when_settings_change(settings):
    settings.PUSHY_SETTINGS = {"CHANNEL_PREFIX": "a_"}
    assert conf.get("CHANNEL_PREFIX") == "a_"
    settings.PUSHY_SETTINGS = {"CHANNEL_PREFIX": "b_"}
    assert conf.get("CHANNEL_PREFIX") == "b_"


def test_value_is_read_once(settings):
    value = {"CHANNEL_PREFIX": "a_"}
    settings.PUSHY_SETTINGS = value
    conf.get("CHANNEL_PREFIX")
    # A change that bypasses Django's setting_changed signal is not seen: cached.
    value["CHANNEL_PREFIX"] = "changed_"
    assert conf.get("CHANNEL_PREFIX") == "a_"


def test_unknown_key_is_a_programming_error():
    with pytest.raises(KeyError):
        conf.get("MODLES")


def test_model_labels_are_lower_cased(settings):
    settings.PUSHY_SETTINGS = {"MODELS": ["testapp.Shot", "testapp.note"]}
    assert conf.model_labels() == {"testapp.shot", "testapp.note"}


@pytest.mark.parametrize(
    "server, url",
    [
        ("http://localhost:8888/", "ws://localhost:8888/ws"),
        ("https://example.com/pushy/", "wss://example.com/pushy/ws"),
        ("https://example.com/pushy", "wss://example.com/pushy/ws"),
        ("http://127.0.0.1:9000", "ws://127.0.0.1:9000/ws"),
    ],
)
def test_websocket_url(server, url):
    assert conf.websocket_url(server) == url


def test_allowed_origins_default_from_allowed_hosts(settings):
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = ["example.com", ".example.org"]
    settings.PUSHY_SETTINGS = {"SOCKET_SERVER": "https://push.example.net/pushy/"}
    assert conf.allowed_origins() == ["example.com", ".example.org", "push.example.net"]
    settings.DEBUG = True
    assert "localhost" in conf.allowed_origins()
    assert "[::1]" in conf.allowed_origins()


def test_wildcard_host_is_never_any_origin(settings):
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = ["*", ".example.com"]
    settings.PUSHY_SETTINGS = {"SOCKET_SERVER": "http://[2001:db8::1]:8888/"}
    assert conf.allowed_origins() == [".example.com", "[2001:db8::1]"]
    assert conf.wildcard_host_dropped()
    settings.PUSHY_SETTINGS = {"ALLOWED_ORIGINS": ["*"]}
    assert not conf.wildcard_host_dropped()
    assert conf.allowed_origins() == ["*"]


def test_allowed_origins_setting_wins(settings):
    settings.PUSHY_SETTINGS = {"ALLOWED_ORIGINS": [".example.org"]}
    assert conf.allowed_origins() == [".example.org"]


def test_docs_list_every_setting_and_check():
    import re
    from pathlib import Path

    import pushy.checks

    root = Path(__file__).resolve().parent.parent
    docs = (root / "docs" / "settings.md").read_text()
    readme = (root / "README.md").read_text()
    for key in conf.DEFAULTS:
        assert f"| `{key}` |" in docs, key
        assert f"| `{key}` |" in readme, key
    source = Path(pushy.checks.__file__).read_text()
    for number in set(re.findall(r"_error\(\s*(\d+)", source)):
        assert f"`pushy.E{int(number):03d}`" in docs, number
    warnings = set(re.findall(r"_warning\(\s*(\d+)", source))
    assert warnings
    for number in warnings:
        assert f"`pushy.W{int(number):03d}`" in docs, number
