"""The node.js peer's set-up: node, and ``npm ci`` into this folder on first use.

The benchmark never fails for want of node.js: ``problem()`` says why the peer
cannot run (no node, no npm, no registry), and the harness skips it with that
reason in the report.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
from pathlib import Path

logger = logging.getLogger(__name__)

FOLDER = Path(__file__).resolve().parent
SERVER = FOLDER / "server.js"
LOCK = FOLDER / "package-lock.json"
# Written into node_modules after a successful ``npm ci``: the lock it installed.
STAMP = FOLDER / "node_modules" / ".installed-from"
INSTALL_TIMEOUT = 120
REQUIRED = ("ws", "ioredis")


def node() -> str | None:
    return shutil.which("node")


def _lock_digest() -> str:
    return hashlib.sha256(LOCK.read_bytes()).hexdigest()


def _installed() -> bool:
    return STAMP.exists() and STAMP.read_text().strip() == _lock_digest()


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


def install() -> str | None:
    """``npm ci`` unless node_modules matches package-lock.json; the error, if any."""
    if _installed():
        return None
    npm = shutil.which("npm")
    if npm is None:
        return "npm is not installed (apt-get install nodejs npm)"
    logger.info("installing the node.js peer's packages: npm ci in %s", FOLDER)
    try:
        done = subprocess.run(
            [npm, "ci", "--prefix", str(FOLDER), "--no-audit", "--no-fund"],
            cwd=FOLDER,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        return f"npm ci took over {INSTALL_TIMEOUT} s (no registry?)"
    if done.returncode:
        return f"npm ci failed (no registry?): {_last_line(done.stderr)}"
    STAMP.write_text(_lock_digest() + "\n")
    return None


def problem() -> str | None:
    """Why the node.js peer cannot run here, or None once it can (installing it)."""
    binary = node()
    if binary is None:
        return "node.js is not installed (apt-get install nodejs npm)"
    failed = install()
    if failed:
        return failed
    check = "".join(f"require('{name}');" for name in REQUIRED)
    done = subprocess.run(
        [binary, "-e", check], cwd=FOLDER, capture_output=True, text=True, timeout=60
    )
    if done.returncode:
        return f"node cannot load {', '.join(REQUIRED)}: {_last_line(done.stderr)}"
    return None


def version() -> str | None:
    """``node --version``, for the report; None without node."""
    binary = node()
    if binary is None:
        return None
    done = subprocess.run([binary, "--version"], capture_output=True, text=True)
    return done.stdout.strip() or None
