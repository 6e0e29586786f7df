"""The browser side as a user gets it: from a built wheel, not this checkout.

An editable install would find pushy.js and the template in the source tree even
if the package data were not declared; a wheel installed into a separate folder
shows what really ships.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

# Runs in a fresh interpreter whose only pushy is the installed wheel.
RENDER = """
import json, pathlib, sys
import django
from django.conf import settings
settings.configure(
    INSTALLED_APPS=["django.contrib.staticfiles", "pushy"],
    TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True}],
    STATIC_URL="/static/",
    PUSHY_SETTINGS={"SOCKET_SERVER": "http://gw.example:8888/", "DEBUG": True},
)
django.setup()
import pushy
from django.contrib.staticfiles import finders
from django.template import engines
html = engines["django"].from_string(
    "{% load pushy_tags %}{% pushy_scripts %}").render({})
print(json.dumps({"pushy": pushy.__file__, "html": html,
                  "static": finders.find("pushy/js/pushy.js")}))
"""


def tracked_files() -> list[str]:
    listing = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    )
    return [name for name in listing.stdout.decode().split("\0") if name]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A wheel built from a copy of the tracked files, unpacked into a folder."""
    source = tmp_path_factory.mktemp("source")
    for name in tracked_files():
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    wheels = tmp_path_factory.mktemp("wheels")
    target = tmp_path_factory.mktemp("site")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", wheels, source],
        check=True,
        capture_output=True,
    )
    [wheel] = wheels.glob("django_pushy-*.whl")
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", target, wheel],
        check=True,
        capture_output=True,
    )
    return target


def test_tag_and_static_file_come_from_the_wheel(installed, tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", RENDER],
        # PYTHONPATH comes before site-packages, where the editable install sits.
        env={"PYTHONPATH": str(installed), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    found = json.loads(result.stdout)
    assert Path(found["pushy"]).is_relative_to(installed)
    assert Path(found["static"]).is_relative_to(installed)
    shipped = Path(found["static"]).read_bytes()
    assert shipped == (ROOT / "pushy/static/pushy/js/pushy.js").read_bytes()
    assert 'src="/static/pushy/js/pushy.js"' in found["html"]
    assert 'data-pushy-socket-url="http://gw.example:8888/"' in found["html"]
    assert 'data-pushy-debug="true"' in found["html"]
