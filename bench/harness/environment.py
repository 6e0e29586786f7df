"""What every scenario sets up the same way: where things are, the machine, the run.

``context()`` is the environment each server and helper process of one run gets
(the checkout on PYTHONPATH, the run's SQLite database, the private Redis);
``machine()`` and ``commit()`` say what a run's figures were measured on.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

from bench.harness.servers import Context
from bench.peers import node_ws

ROOT = Path(__file__).resolve().parents[2]  # the checkout
RESULTS = ROOT / "bench" / "results"  # where scenarios write by default


def machine() -> dict:
    """What the figures were measured on."""
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        kib = int(f.readline().split()[1])
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": round(kib / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "node": node_ws.version(),
    }


def prepare_db(ctx: Context, items: int) -> str:
    """Create the database; the session key the load client signs in with."""
    return ctx.run_json("bench.site.prepare", str(items), timeout=120)["session_key"]


def commit() -> str:
    """The commit measured (``-dirty`` when the work tree had changes)."""
    done = subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip() or "unknown"


def context(workdir: str, redis_url: str, redis_pid: int | None) -> Context:
    """What one run's processes share: the database in ``workdir``, ``redis_url``."""
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
        BENCH_DB=os.path.join(workdir, "bench.sqlite3"),
        BENCH_REDIS_URL=redis_url,
        PYTHONUNBUFFERED="1",
    )
    return Context(str(ROOT), workdir, env, redis_url, redis_pid)
