"""``PUSHY_SETTINGS`` set but ``"pushy"`` not in INSTALLED_APPS: said wherever
pushy's code runs anyway, since Django's checks never see an app not installed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import subprocess_env

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent

SETTINGS = """\
from tests.settings import *  # noqa: F403
INSTALLED_APPS = [a for a in INSTALLED_APPS if a != "pushy"]  # noqa: F405
"""


@pytest.fixture
def without_the_app(tmp_path):
    (tmp_path / "no_pushy_settings.py").write_text(SETTINGS)
    return subprocess_env(
        "redis://127.0.0.1:1/0",
        DJANGO_SETTINGS_MODULE="no_pushy_settings",
        PYTHONPATH=f"{tmp_path}:{ROOT}",
    )


def run(env: dict, code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=50,
    )  # fmt: skip


def test_the_api_says_the_app_is_missing_once(without_the_app):
    result = run(
        without_the_app,
        """
        import django; django.setup()
        from pushy import api
        from tests.testapp.models import Shot
        for _ in range(2):
            try:
                api.notify(Shot(pk=1))
            except Exception:
                pass
        """,
    )
    assert result.stderr.count("'pushy' is not in INSTALLED_APPS") == 1, result
    assert 'Add "pushy" to INSTALLED_APPS' in result.stderr


def test_a_projects_pytest_run_warns(without_the_app, tmp_path):
    test = tmp_path / "test_page.py"
    test.write_text("def test_nothing():\n    pass\n")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "pytest_django", str(test),
         "-W", "default", "-p", "no:cacheprovider", "--rootdir", str(tmp_path)],
        env=without_the_app, cwd=tmp_path, capture_output=True, text=True,
        timeout=50,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "django-pushy: PUSHY_SETTINGS is set but 'pushy'" in result.stdout


def test_installed_says_nothing():
    from pushy.conf import app_missing

    assert app_missing() is None
