"""What ``ps`` and ``top`` show for pushy's long-running processes.

The gateway runs in a fresh interpreter started as ``python -c "import gevent;
…"`` (gevent must patch before anything imports socket), which is all an
operator would otherwise see. ``setproctitle`` rewrites the command line in
place, as gunicorn and celery do (docs/decisions.md, "Process titles").
"""

from __future__ import annotations

import setproctitle


def set_title(title: str) -> None:
    """Show ``title`` as this process's command line (and, on Linux, its name)."""
    setproctitle.setproctitle(title)


def listening_on(host: str | None, port: int | None, unix: str | None) -> str:
    """Where a gateway listens, as its title says it: ``host:port`` or the path."""
    if unix:
        return unix
    return f"{host}:{port}"
