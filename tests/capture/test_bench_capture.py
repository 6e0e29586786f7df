"""The capture scenario runs end to end (briefly): bench/scenarios/capture.py."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(300)]


def test_capture_bench_smoke(tmp_path):
    out = tmp_path / "CAPTURE.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench.capture", "--seconds", "1", "--rate", "200",
         "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ")]
    # header, then one row per path: every changed row was delivered.
    assert [r.split(" | ")[0] for r in rows[1:]] == ["| signals", "| triggers"]
    for row in rows[1:]:
        cells = row.split(" | ")
        assert cells[1] == cells[2] == "200", row
