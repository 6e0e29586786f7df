"""The one table of settings (pushy/settings_table.py) and what must follow it:
conf's defaults, the checks, docs/settings.md, the README and the code's reads."""

from __future__ import annotations

import ast
import re
from typing import Any

import pytest

from pushy import checks, conf, settings_table
from tests.conftest import ROOT

pytestmark = pytest.mark.timeout(30)

TABLE = {setting.name: setting for setting in settings_table.SETTINGS}


def key_rows(markdown: str, heading: str) -> dict[str, str]:
    """``{key: default cell}`` of the first table under ``heading``."""
    section = markdown.split(heading + "\n", 1)[1]
    table = re.search(r"\n(\|.*?)(?:\n\n|\Z)", section, re.S).group(1)
    rows: dict[str, str] = {}
    for line in table.splitlines()[2:]:  # past the header and the |---| line
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        key = cells[0].strip("`")
        assert key not in rows, f"{key} is listed twice under {heading}"
        rows[key] = cells[1]
    return rows


def same_default(cell: str, default: Any) -> bool:
    """Whether a table's default cell (a Python literal in backticks) is ``default``.

    The docs write an empty sequence as ``[]`` where the code keeps a tuple.
    """
    assert cell.startswith("`") and cell.endswith("`"), cell
    shown = ast.literal_eval(cell.strip("`"))
    if isinstance(shown, (list, tuple)) and isinstance(default, (list, tuple)):
        return list(shown) == list(default)
    return type(shown) is type(default) and shown == default


def test_names_are_unique_and_each_has_a_one_line_doc():
    assert len(TABLE) == len(settings_table.SETTINGS)
    for setting in settings_table.SETTINGS:
        assert re.fullmatch(r"[A-Z][A-Z_]*", setting.name), setting.name
        assert setting.doc.strip() and "\n" not in setting.doc, setting.name


def test_conf_defaults_are_the_table():
    assert list(conf.DEFAULTS) == list(TABLE)
    for name, setting in TABLE.items():
        assert conf.DEFAULTS[name] is setting.default


def test_every_setting_has_a_check():
    for setting in settings_table.SETTINGS:
        assert setting.check in checks._CHECKS, setting.name


def test_docs_list_exactly_the_table_with_its_defaults():
    docs = (ROOT / "docs" / "settings.md").read_text()
    rows = key_rows(docs, "## Keys")
    assert sorted(rows) == sorted(TABLE)
    for name, cell in rows.items():
        assert same_default(cell, TABLE[name].default), (name, cell)


def test_readme_lists_some_of_the_table_with_its_defaults():
    readme = (ROOT / "README.md").read_text()
    rows = key_rows(readme, "### Configuration")
    assert rows
    assert set(rows) <= set(TABLE), set(rows) - set(TABLE)
    for name, cell in rows.items():
        assert same_default(cell, TABLE[name].default), (name, cell)


def test_every_setting_the_code_reads_is_in_the_table():
    read = set()
    for path in (ROOT / "pushy").rglob("*.py"):
        read |= set(re.findall(r"conf\.get\(\s*[\"']([A-Z_]+)[\"']", path.read_text()))
    assert read  # the pattern still finds the reads
    assert read <= set(TABLE), read - set(TABLE)


def test_the_table_decides_the_check(settings, monkeypatch):
    """A key is checked the way its row says, not by a list kept elsewhere."""
    row = TABLE["SHUTDOWN_TIMEOUT"]
    settings.PUSHY_SETTINGS = {"SHUTDOWN_TIMEOUT": 0.5}
    assert checks.check_settings() == []
    stricter = [
        settings_table.Setting(s.name, s.default, settings_table.POSITIVE_INT, s.doc)
        if s is row
        else s
        for s in settings_table.SETTINGS
    ]
    monkeypatch.setattr(settings_table, "SETTINGS", tuple(stricter))
    (error,) = checks.check_settings()
    assert error.id == "pushy.E010"
    assert "'SHUTDOWN_TIMEOUT'] must be a positive int, not 0.5" in error.msg
