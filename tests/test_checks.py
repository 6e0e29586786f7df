import pytest
from django.conf import settings
from django.core.checks import run_checks
from django.test import override_settings

BASE = {"MODELS": ["testapp.shot"]}


def pushy_errors(**pushy_settings):
    with override_settings(PUSHY_SETTINGS={**BASE, **pushy_settings}):
        return [m for m in run_checks() if m.id.startswith("pushy.")]


def ids(messages):
    return [m.id for m in messages]


def test_valid_settings_pass():
    assert (
        pushy_errors(
            SOCKET_SERVER="https://example.com/pushy/",
            REDIS_URL="rediss://user:pw@redis.example.com:6380/2",
            CHANNEL_PREFIX="site1:",
            AUTHORIZE="tests.testapp.auth.only_staff",
            AUTHORIZATION_TTL=0.5,
            ALLOWED_ORIGINS=[".example.com"],
            PING_INTERVAL=1,
            DEBUG=True,
            MAX_CONNECTIONS=50_000,
            MAX_CONNECTIONS_PER_CLIENT=None,
            TRUSTED_PROXIES=["127.0.0.1", "10.0.0.0/8", "::1", "fd00::/8", "unix"],
        )
        == []
    )


def test_settings_must_be_a_dict():
    with override_settings(PUSHY_SETTINGS=["testapp.shot"]):
        messages = [m for m in run_checks() if m.id.startswith("pushy.")]
    assert ids(messages) == ["pushy.E001"]


def test_typo_in_a_key_is_reported_with_a_suggestion():
    (error,) = pushy_errors(MODLES=["testapp.shot"])
    assert error.id == "pushy.E002"
    assert "'MODLES'" in error.msg
    assert error.hint == "Did you mean 'MODELS'?"


@pytest.mark.parametrize("models", ["testapp.shot", [42], ["shot"], ["a.b.c"]])
def test_malformed_models(models):
    assert ids(pushy_errors(MODELS=models)) == ["pushy.E003"]


def test_unknown_model_label():
    (error,) = pushy_errors(MODELS=["testapp.shoot"])
    assert error.id == "pushy.E004"
    assert "'testapp.shoot'" in error.msg
    assert error.hint == "Did you mean 'testapp.shot'?"


def test_unknown_model_label_without_a_close_one():
    (error,) = pushy_errors(MODELS=["zzz.qqqqqq"])
    assert error.id == "pushy.E004"
    assert "INSTALLED_APPS" in error.hint


def test_key_in_the_wrong_case_gets_a_suggestion():
    (error,) = pushy_errors(models=["testapp.shot"])
    assert error.id == "pushy.E002"
    assert error.hint == "Did you mean 'MODELS'?"


@pytest.mark.parametrize("name", ["PUSHY_SETTING", "PUSHY", "PUSY_SETTINGS"])
def test_a_misspelled_setting_name_is_reported(name):
    with override_settings(**{name: {"MODELS": ["testapp.shot"]}}):
        found = [m for m in run_checks() if m.id == "pushy.E020"]
    assert len(found) == 1
    assert name in found[0].msg
    assert "PUSHY_SETTINGS" in found[0].hint


def test_no_lookalike_setting_no_error():
    assert not [m for m in run_checks() if m.id == "pushy.E020"]


def test_model_without_get_api_url():
    (error,) = pushy_errors(MODELS=["testapp.nourl"])
    assert error.id == "pushy.E005"
    assert "get_api_url" in error.msg


@pytest.mark.parametrize(
    "value", ["localhost:8888", "ws://localhost:8888/", "http://", "http://h:99999/", 8]
)
def test_malformed_socket_server(value):
    (error,) = pushy_errors(SOCKET_SERVER=value)
    assert error.id == "pushy.E006"
    assert "SOCKET_SERVER" in error.msg


@pytest.mark.parametrize(
    "value", ["localhost:6379", "http://localhost/", "redis://", "redis://h:x/", None]
)
def test_malformed_redis_url(value):
    (error,) = pushy_errors(REDIS_URL=value)
    assert error.id == "pushy.E007"
    assert "REDIS_URL" in error.msg


def test_unix_redis_url_is_accepted():
    assert pushy_errors(REDIS_URL="unix:///run/redis.sock?db=1") == []


@pytest.mark.parametrize("value", ["pushy_*", "a?", "[ab]", "", 3])
def test_channel_prefix_without_glob_characters(value):
    (error,) = pushy_errors(CHANNEL_PREFIX=value)
    assert error.id == "pushy.E008"
    assert "CHANNEL_PREFIX" in error.msg


@pytest.mark.parametrize(
    "value", ["tests.testapp.auth.missing", "no.such.module.f", "nodots", 5]
)
def test_authorize_must_import(value):
    (error,) = pushy_errors(AUTHORIZE=value)
    assert error.id == "pushy.E009"
    assert "AUTHORIZE" in error.msg


def test_authorize_must_be_callable():
    (error,) = pushy_errors(AUTHORIZE="tests.testapp.auth.NOT_CALLABLE")
    assert error.id == "pushy.E009"


@pytest.mark.parametrize(
    "key, value",
    [
        ("MAX_SUBSCRIPTIONS", "1000"),
        ("MAX_SUBSCRIPTIONS", 0),
        ("MAX_MESSAGE_BYTES", 1.5),
        ("SEND_QUEUE_SIZE", True),
        ("PING_INTERVAL", "25"),
        ("PING_INTERVAL", 0.5),
        ("WRITE_TIMEOUT", -1),
        ("RATE_LIMIT", None),
        ("MAX_CONNECTIONS", 0),
        ("MAX_CONNECTIONS", "10000"),
        ("MAX_CONNECTIONS_PER_CLIENT", -1),
        ("MAX_CONNECTIONS_PER_CLIENT", 2.5),
        ("MAX_UPDATE_BYTES", 0),
        ("MAX_UPDATE_BYTES", "1M"),
        ("REDIS_HEALTH_INTERVAL", 0),
        ("REDIS_HEALTH_INTERVAL", "5"),
        ("AUTHORIZATION_TTL", 0),
        ("AUTHORIZATION_TTL", "60"),
        ("PUBLISH_TIMEOUT", 0),
        ("PUBLISH_TIMEOUT", -0.05),
        ("PUBLISH_TIMEOUT", "0.05"),
        ("HISTORY_LENGTH", -1),
        ("HISTORY_LENGTH", True),
        ("HISTORY_SECONDS", 0),
    ],
)
def test_limits_have_the_right_type(key, value):
    (error,) = pushy_errors(**{key: value})
    assert error.id == "pushy.E010"
    assert key in error.msg


def test_a_history_of_no_updates_is_allowed():
    assert pushy_errors(HISTORY_LENGTH=0) == []


def test_debug_must_be_bool():
    assert ids(pushy_errors(DEBUG="yes")) == ["pushy.E011"]


@pytest.mark.parametrize("value", ["example.com", [1]])
def test_allowed_origins_must_be_a_list_of_strings(value):
    assert ids(pushy_errors(ALLOWED_ORIGINS=value)) == ["pushy.E012"]


def test_every_problem_is_reported_at_once():
    found = ids(pushy_errors(MODELS=["testapp.nope"], REDIS_URL="x", DEBUG=1))
    assert sorted(found) == ["pushy.E004", "pushy.E007", "pushy.E011"]


@pytest.mark.parametrize(
    "value", ["127.0.0.1", ["localhost"], ["10.0.0.0/33"], [None], ["127.0.0.1", ""]]
)
def test_trusted_proxies_must_be_addresses_or_networks(value):
    errors = pushy_errors(TRUSTED_PROXIES=value)
    assert ids(errors) == ["pushy.E013"]
    assert errors[0].hint


def test_wildcard_allowed_hosts_warns_that_it_is_not_any_origin():
    with override_settings(ALLOWED_HOSTS=["*"]):
        (warning,) = pushy_errors()
        assert warning.id == "pushy.W001"
        assert "localhost" in warning.msg  # the host of the default SOCKET_SERVER
        assert "ALLOWED_ORIGINS" in warning.hint
        # Choosing the origins silences it.
        assert pushy_errors(ALLOWED_ORIGINS=["example.com"]) == []
    assert pushy_errors() == []


def test_wildcard_in_allowed_origins_warns():
    (warning,) = pushy_errors(ALLOWED_ORIGINS=["*"])
    assert warning.id == "pushy.W002"
    assert "ALLOWED_ORIGINS" in warning.hint


def test_a_model_with_get_absolute_url_alone_needs_nothing_more():
    models = [*settings.PUSHY_SETTINGS["MODELS"], "testapp.product"]
    pushy = {**settings.PUSHY_SETTINGS, "MODELS": models}
    with override_settings(PUSHY_SETTINGS=pushy):
        assert not [e for e in run_checks() if e.id == "pushy.E005"]


@pytest.mark.parametrize(
    "value", ["no.such.module.f", "tests.testapp.auth.NOT_CALLABLE", 5]
)
def test_presence_name_must_import_and_be_callable(value):
    (error,) = pushy_errors(PRESENCE_NAME=value)
    assert error.id == "pushy.E009"
    assert "PRESENCE_NAME" in error.msg


def test_presence_name_may_name_a_function():
    assert pushy_errors(PRESENCE_NAME="pushy.gateway.presence.default_name") == []
