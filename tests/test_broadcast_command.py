"""manage.py pushy_test_broadcast, run as a real subprocess."""

import json

import pytest

from tests.support.servers import free_port
from tests.testapp.models import Shot, Unpushed

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


def assert_one_line_error(result, text):
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert text in lines[0]


def test_publishes_and_reports_the_listeners(manage, published):
    shot = Shot.objects.create(title="hello")
    published.next()
    result = manage("pushy_test_broadcast", "testapp.shot", str(shot.pk))
    assert result.returncode == 0, result.stderr
    body = {
        "url": f"/api/shot/{shot.pk}/",
        "event": "update",
        "model": "testapp.shot",
        "pk": shot.pk,
        "collection": "/api/shot/",
        "data": {"title": "hello"},
    }
    assert published.next() == ("pushy_testapp.shot", body)
    assert result.stdout.splitlines() == [
        "channel: pushy_testapp.shot",
        f"body: {json.dumps(body, separators=(',', ':'))}",
        "received by 1 gateway process(es)",
    ]


def test_says_when_nobody_listens(manage):
    shot = Shot.objects.create(title="x")
    result = manage(
        "pushy_test_broadcast", "testapp.shot", str(shot.pk), "--event", "delete"
    )
    assert result.returncode == 0, result.stderr
    assert '"event":"delete"' in result.stdout
    assert "none is listening" in result.stdout


def test_unknown_model(manage):
    result = manage("pushy_test_broadcast", "testapp.nothing", "1")
    assert_one_line_error(result, "unknown model 'testapp.nothing'")
    assert "expected app_label.model_name" in result.stderr


def test_a_bare_model_name_says_the_expected_form(manage):
    result = manage("pushy_test_broadcast", "Shot", "1")
    assert_one_line_error(
        result,
        "unknown model 'Shot': expected app_label.model_name; "
        "did you mean 'testapp.shot'?",
    )


def test_model_not_in_models(manage):
    obj = Unpushed.objects.create(name="x")
    result = manage("pushy_test_broadcast", "testapp.unpushed", str(obj.pk))
    assert_one_line_error(result, "testapp.unpushed is not in PUSHY_SETTINGS['MODELS']")


def test_missing_pk(manage):
    result = manage("pushy_test_broadcast", "testapp.shot", "999999")
    assert_one_line_error(result, "testapp.shot has no object with pk '999999'")


def test_malformed_pk(manage):
    result = manage("pushy_test_broadcast", "testapp.shot", "abc")
    assert_one_line_error(result, "'abc' is not a valid pk for testapp.shot")


def test_unreachable_redis(manage):
    shot = Shot.objects.create(title="x")
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    result = manage(
        "pushy_test_broadcast", "testapp.shot", str(shot.pk), redis_url=nowhere
    )
    assert_one_line_error(result, "Redis at redis://127.0.0.1")
