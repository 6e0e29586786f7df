"""The reference docs name what exists: the module map in docs/architecture.md
matches the files under pushy/, the /stats list in docs/protocol.md names every
counter and histogram, and every section of docs/decisions.md cited by title
elsewhere is still there."""

from __future__ import annotations

import re

import pytest

from pushy.gateway import stats
from tests.conftest import ROOT

pytestmark = pytest.mark.timeout(30)

DOCS = ROOT / "docs"
# One name column entry of the map: a path ending in .py, or a folder ending in /.
NAME = re.compile(r"[\w/]+(?:\.py|/)\Z")


def module_map() -> str:
    text = (DOCS / "architecture.md").read_text()
    section = text.split("## Modules and who may import whom", 1)[1]
    return re.findall(r"```\n(.*?)```", section, re.S)[0]


def mapped_files(block: str) -> set[str]:
    """The module files the map names, as paths from the repository root.

    A line of the map starts, after its indentation, with one folder (``name/``)
    or one or more files (``a.py, b.py``), then a description after two spaces.
    A folder holds the lines indented deeper than it; lines that start with
    anything else continue a description.
    """
    folders: list[tuple[int, str]] = []
    files = set()
    for line in block.splitlines():
        indent = len(line) - len(line.lstrip(" "))
        names = re.split(r",\s", line.strip().split("  ", 1)[0])
        if not names[0] or not all(NAME.match(name) for name in names):
            continue  # a description's continuation
        while folders and folders[-1][0] >= indent:
            folders.pop()
        prefix = "".join(folder for _, folder in folders)
        if len(names) == 1 and names[0].endswith("/"):
            folders.append((indent, names[0]))
            continue
        files.update(prefix + name for name in names if name.endswith(".py"))
    return files


def module_files() -> set[str]:
    return {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "pushy").rglob("*.py")
        if path.name != "__init__.py" and "migrations" not in path.parts
    }


def test_the_map_parser_reads_folders_files_and_lists():
    block = (
        "pushy/\n"
        "  conf.py            settings\n"
        "                     more words.py about it\n"
        "  gateway/           the server\n"
        "    hub.py             fan-out\n"
        "  management/\n"
        "    commands/          hand-offs:\n"
        "      a.py, b.py\n"
        "  templatetags/tags.py  tags\n"
    )
    assert mapped_files(block) == {
        "pushy/conf.py",
        "pushy/gateway/hub.py",
        "pushy/management/commands/a.py",
        "pushy/management/commands/b.py",
        "pushy/templatetags/tags.py",
    }


def test_every_module_is_in_the_architecture_map():
    missing = module_files() - mapped_files(module_map())
    assert not missing, f"add these to docs/architecture.md's module map: {missing}"


def test_every_module_the_map_names_exists():
    gone = {path for path in mapped_files(module_map()) if not (ROOT / path).is_file()}
    assert not gone, f"docs/architecture.md's module map names missing files: {gone}"


def test_the_stats_list_names_every_counter_and_histogram():
    text = (DOCS / "protocol.md").read_text()
    section = text[text.index("- `GET /stats`") : text.index("- `GET /metrics`")]
    names = [*stats.Stats().snapshot(0, 0, True), *stats.COUNTERS, *stats.HISTOGRAMS]
    missing = [name for name in names if f"`{name}`" not in section]
    assert not missing, f"docs/protocol.md's /stats list lacks {missing}"


def cited_decisions() -> set[str]:
    """Titles cited as (docs/decisions.md, "Title...") anywhere outside it."""
    cited = set()
    places = [ROOT / "README.md", ROOT / "setup.py"]
    for folder in ("pushy", "tests", "bench", "docs"):
        places += [
            path
            for path in (ROOT / folder).rglob("*")
            if path.suffix in (".py", ".md", ".js", ".html")
        ]
    for path in places:
        if path.name in ("decisions.md", "test_docs.py"):
            continue
        text = " ".join(path.read_text().split())
        text = re.sub(r"\s*#\s*", " ", text)  # a citation wrapped in a comment
        for match in re.finditer(r'decisions\.md,? \(?"([^"]+)"', text):
            cited.add(match.group(1))
        # A second title in the same citation: ..., "A" and "B").
        for match in re.finditer(r'decisions\.md, "[^"]+" and "([^"]+)"', text):
            cited.add(match.group(1))
    return cited


def test_every_cited_decision_is_a_heading():
    text = (DOCS / "decisions.md").read_text()
    lines = text.splitlines()
    headings = [line.lstrip("#").strip() for line in lines if line.startswith("#")]
    cited = cited_decisions()
    assert "Never silently stale" in cited  # the search finds citations at all
    missing = [
        title
        for title in cited
        if not any(heading.startswith(title.rstrip(".")) for heading in headings)
    ]
    assert not missing, f"docs/decisions.md has no section titled {missing}"


def test_decisions_stay_a_short_reference():
    lines = (DOCS / "decisions.md").read_text().splitlines()
    # A reference, not a diary: history goes to CHANGELOG.md.
    assert len(lines) < 700


@pytest.mark.parametrize("doc", sorted(p.name for p in DOCS.glob("*.md")))
def test_relative_links_resolve(doc: str):
    text = (DOCS / doc).read_text()
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
        assert (DOCS / target).exists(), f"{doc} links to {target}, which is not there"
