"""A non-editable install from the sdist gives a working app.

The sdist is built from a copy of the source tree and installed into a fresh
venv, so what reaches users is exactly what MANIFEST.in and setup.py ship. To
stay offline, the venv borrows the dependencies (Django, gevent, redis) from
the test venv through a .pth path line, which does not bring the test venv's
editable pushy with it.
"""

import shutil
import site
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

import pushy

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "pushy"
SKIP = shutil.ignore_patterns(
    ".git",
    ".venv*",
    "__pycache__",
    "*.egg-info",
    "build",
    "dist",
    "*.sqlite3",
    "node_modules",
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def run(*args, cwd, **kwargs):
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def shipped_data_files():
    """Every static file and template in the source tree, relative to pushy/."""
    files = []
    for folder in ("static", "templates"):
        files += [p.relative_to(PACKAGE) for p in (PACKAGE / folder).rglob("*")]
    return sorted(str(p) for p in files if (PACKAGE / p).is_file())


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("packaging")
    shutil.copytree(ROOT, tmp / "src", ignore=SKIP)
    run(sys.executable, "-m", "build", "--sdist", "--no-isolation",
        "--outdir", str(tmp / "dist"), str(tmp / "src"), cwd=tmp)  # fmt: skip
    (sdist,) = (tmp / "dist").glob("django[-_]pushy-*.tar.gz")

    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", str(venv), cwd=tmp)
    python = venv / "bin" / "python"
    venv_site = run(
        python, "-c", "import site; print(site.getsitepackages()[0])", cwd=tmp
    )
    (Path(venv_site.strip()) / "borrowed.pth").write_text(
        site.getsitepackages()[0] + "\n"
    )
    run(sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
        "--no-deps", "--no-build-isolation", str(sdist), cwd=tmp)  # fmt: skip

    project = tmp / "project"
    project.mkdir()
    (project / "proj_settings.py").write_text(
        textwrap.dedent(
            """
            SECRET_KEY = "x"
            INSTALLED_APPS = ["django.contrib.staticfiles", "pushy"]
            DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                                     "NAME": ":memory:"}}
            STATIC_URL = "/static/"
            TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates",
                          "APP_DIRS": True}]
            PUSHY_SETTINGS = {"MODELS": [], "REDIS_URL": "redis://127.0.0.1:1/0"}
            """
        )
    )
    return {"sdist": sdist, "python": python, "project": project}


def django(installed, *args):
    env = {
        "DJANGO_SETTINGS_MODULE": "proj_settings",
        "PYTHONPATH": str(installed["project"]),
    }
    return subprocess.run(
        [str(installed["python"]), "-m", "django", *args],
        cwd=installed["project"],
        env=env,
        capture_output=True,
        text=True,
    )


def test_sdist_ships_static_files_and_templates(installed):
    with tarfile.open(installed["sdist"]) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    for path in shipped_data_files():
        assert f"pushy/{path}" in names
    assert {"README.md", "CHANGELOG.md", "LICENSE", "setup.py", "MANIFEST.in"} <= names


def test_install_is_not_the_source_tree(installed):
    code = "import pushy; print(pushy.__file__); print(pushy.__version__)"
    out = run(installed["python"], "-c", code, cwd=installed["project"]).split()
    assert "site-packages" in out[0] and str(ROOT) not in out[0]
    assert out[1] == pushy.__version__


def test_installed_package_has_data_files(installed):
    code = "import pushy, pathlib; print(pathlib.Path(pushy.__file__).parent)"
    package = Path(
        run(installed["python"], "-c", code, cwd=installed["project"]).strip()
    )
    assert shipped_data_files(), "pushy ships no static files or templates"
    for path in shipped_data_files():
        assert (package / path).is_file(), path


def test_installed_app_checks_and_commands(installed):
    result = django(installed, "check")
    assert result.returncode == 0, result.stderr
    listing = django(installed, "help").stdout
    for command in (PACKAGE / "management" / "commands").glob("[!_]*.py"):
        assert command.stem in listing
    broadcast = django(installed, "pushy_test_broadcast", "nope.model", "1")
    assert broadcast.returncode == 1
    assert "unknown model 'nope.model'" in broadcast.stderr


def test_installed_static_files_are_found(installed):
    for path in shipped_data_files():
        if path.startswith("static/"):
            result = django(installed, "findstatic", path.removeprefix("static/"))
            assert result.returncode == 0, result.stderr
