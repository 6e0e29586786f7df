"""The README's snippets work as pasted: the template renders, the settings pass."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.template import engines

from tests.conftest import ROOT, subprocess_env

pytestmark = pytest.mark.timeout(60)

README = (ROOT / "README.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, re.S)


def block_with(language: str, marker: str) -> str:
    (found,) = [block for block in blocks(language) if marker in block]
    return found


def test_the_template_snippet_renders_as_pasted(settings):
    settings.STATIC_URL = "/static/"
    snippet = block_with("html", "pushy_scripts")
    html = engines["django"].from_string(snippet).render({})
    assert 'src="/static/pushy/js/pushy.js"' in html
    assert 'src="/static/myapp/page.js"' in html


def test_the_settings_snippet_passes_the_checks(tmp_path: Path, redis_server):
    snippet = block_with("python", "PUSHY_SETTINGS")
    namespace: dict = {}
    exec(snippet, namespace)  # the README's own lines, as a user pastes them
    settings_module = tmp_path / "readme_settings.py"
    # The README's MODELS name the sample site's app: its settings are the project.
    settings_module.write_text(
        "from sample_site.settings import *  # noqa: F403\n"
        f"PUSHY_SETTINGS = {namespace['PUSHY_SETTINGS']!r}\n"
    )
    env = subprocess_env(redis_server.url, DJANGO_SETTINGS_MODULE="readme_settings")
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    result = subprocess.run(
        [sys.executable, "-m", "django", "check", "--fail-level", "WARNING"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_the_smallest_live_page_renders_as_pasted(monkeypatch):
    from pushy.templatetags import pushy_tags
    from tests.testapp.models import Shot

    monkeypatch.setattr(pushy_tags, "current_version", lambda: None)
    (snippet,) = [b for b in blocks("django") if "get_rating_display" in b]
    lines = snippet.strip().splitlines()
    assert len(lines) == 2  # the section's title counts them
    shot = Shot(pk=3, title="Dawn")
    shot.get_rating_display = lambda: "★★☆☆☆"
    html = engines["django"].from_string(snippet).render({"shot": shot})
    assert 'src="/static/pushy/js/pushy.js"' in html
    assert (
        '<div id="pushy-testapp-shot-3" data-pushy-url="/api/shot/3/" '
        "data-pushy-object data-pushy-refresh><h2>Dawn</h2> ★★☆☆☆</div>"
    ) in html


def test_the_quick_start_comes_first_and_its_template_renders(monkeypatch):
    from pushy.templatetags import pushy_tags
    from tests.testapp.models import Shot

    assert README.index("## Quick start") < README.index("## The demo")
    assert README.index("## The demo") < README.index("## From a checkout")
    monkeypatch.setattr(pushy_tags, "current_version", lambda: None)
    quick = README[README.index("## Quick start") : README.index("## The smallest")]
    (snippet,) = re.findall(r"```django\n(.*?)```", quick, re.S)
    html = (
        engines["django"]
        .from_string(snippet)
        .render({"shot": Shot(pk=3, title="Dawn")})
    )
    assert 'src="/static/pushy/js/pushy.js"' in html  # the block loads the client
    assert 'data-pushy-url="/api/shot/3/"' in html
