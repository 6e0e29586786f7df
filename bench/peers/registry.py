"""The servers the benchmark compares: one entry each, the only list of them.

The harness starts a server by its entry's ``start``, skips it (saying why) when
its ``problem`` says it cannot run here, and the report and the plot take its
``label`` and ``colour`` from here. Adding a peer: its own files under
bench/peers/, a ``start`` function and one ``Peer`` below (see bench/README.md).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

from bench.harness.servers import Context, Starter, spawn
from bench.peers import node_ws

SETTINGS = "bench.site.settings"  # the Django settings every process but Channels' uses
SUBJECT = "pushy"  # the server measured; every other entry is a peer


@dataclass(frozen=True)
class Peer:
    """One server under test."""

    name: str  # its name in --servers and in results.json
    label: str  # its name in RESULTS.md, the README and the plot
    colour: str  # its lines in the plot (a matplotlib colour)
    start: Starter  # its processes, listening on the given port
    problem: Callable[[], str | None]  # why it cannot run here, or None
    # The largest N it is measured at (None: every N, and the hold test).
    max_size: int | None = None


def start_floor(ctx: Context, port: int) -> list[subprocess.Popen]:
    args = [sys.executable, "-m", "bench.peers.floor", "--port", str(port)]
    return [spawn(ctx, [*args, "--redis", ctx.redis_url], SETTINGS)]


def start_channels(
    ctx: Context, port: int, settings: str = "bench.peers.channels.settings"
) -> list[subprocess.Popen]:
    # -v 0: no access log line per connection (neither other server writes one).
    daphne = [sys.executable, "-m", "daphne", "-v", "0", "-b", "127.0.0.1"]
    daphne += ["-p", str(port)]
    return [
        spawn(ctx, [*daphne, "bench.peers.channels.app:application"], settings),
        spawn(ctx, [sys.executable, "-m", "bench.peers.channels.bridge"], settings),
    ]


def start_channels_tuned(ctx: Context, port: int) -> list[subprocess.Popen]:
    return start_channels(ctx, port, "bench.peers.channels.tuned_settings")


def start_node_ws(ctx: Context, port: int) -> list[subprocess.Popen]:
    args = [node_ws.node() or "node", str(node_ws.SERVER), "--port", str(port)]
    args += ["--redis", ctx.redis_url]
    return [spawn(ctx, args, SETTINGS, name="node-ws")]


def start_pushy(ctx: Context, port: int) -> list[subprocess.Popen]:
    args = [sys.executable, "-m", "django", "runpushy", "--host", "127.0.0.1"]
    return [spawn(ctx, [*args, "--port", str(port)], SETTINGS)]


def channels_installed() -> bool:
    try:
        import channels  # noqa: F401
        import channels_redis  # noqa: F401
        import daphne  # noqa: F401
    except ImportError:
        return False
    return True


def pushy_gateway_installed() -> bool:
    try:
        import pushy.management.commands.runpushy  # noqa: F401
    except ImportError:
        return False
    return True


def _channels_problem() -> str | None:
    if channels_installed():
        return None
    return "channels, channels_redis or daphne is not installed"


def _pushy_problem() -> str | None:
    return (
        None
        if pushy_gateway_installed()
        else "pushy's gateway (runpushy) is not available"
    )


def _always() -> None:
    return None


# In the report's column order: the peers, then pushy. Channels delivers about
# 2,000 updates a second here: one burst of 200 to 5,000 subscribers would take
# 8 minutes, so it stops at 1,000.
PEERS: tuple[Peer, ...] = (
    Peer("node-ws", "node.js ws", "tab:green", start_node_ws, node_ws.problem),
    Peer("floor", "gevent floor", "tab:gray", start_floor, _always),
    Peer("channels", "Channels", "tab:red", start_channels, _channels_problem, 1000),
    Peer(
        "channels-tuned",
        "Channels tuned",
        "tab:orange",
        start_channels_tuned,
        _channels_problem,
        1000,
    ),  # fmt: skip
    Peer(SUBJECT, "pushy", "tab:blue", start_pushy, _pushy_problem),
)
NAMES = tuple(p.name for p in PEERS)
# The order of a run: the slow Channels runs last.
RUN_ORDER = [p.name for p in sorted(PEERS, key=lambda p: p.max_size is not None)]


def peer(name: str) -> Peer:
    """The entry called ``name`` (KeyError for none)."""
    for entry in PEERS:
        if entry.name == name:
            return entry
    raise KeyError(name)
