"""bench/results/results.png: deliveries/s, latency, memory against N, each server."""

from __future__ import annotations

import logging
from pathlib import Path

from bench.peers.registry import PEERS
from bench.report.metrics import COLUMNS, NAMES, rows_of

logger = logging.getLogger(__name__)

COLORS = {p.name: p.colour for p in PEERS}


def _bursts(rows: dict[int, dict]) -> list[tuple[int, float]]:
    return sorted(
        (n, r["burst"]["per_second"])
        for n, r in rows.items()
        if "burst" in r and r["burst"]["per_second"] > 0
    )


def _latency(ax, name: str, rows: dict[int, dict]) -> None:
    lat = sorted((n, r["latency"]["last"]) for n, r in rows.items() if "latency" in r)
    lat = [(n, s) for n, s in lat if s["p50_ms"] is not None]
    if not lat:
        return
    xs = [n for n, _ in lat]
    line = ax.plot(xs, [s["p50_ms"] for _, s in lat], marker="o", color=COLORS[name])[0]
    ax.plot(
        xs, [s["p99_ms"] for _, s in lat], marker="x", linestyle="--",
        color=line.get_color(),
    )  # fmt: skip
    line.set_label(f"{NAMES[name]} (p50 solid, p99 dashed)")


def _memory(rows: dict[int, dict]) -> list[tuple[int, float]]:
    return sorted(
        (n, r["connect"]["bytes_per_connection"] / 1024)
        for n, r in rows.items()
        if "connect" in r and r["connect"]["bytes_per_connection"]
    )


def plot(results: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no plot")
        return
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.4))
    for name in COLUMNS:
        rows = rows_of(results, name)
        for ax, points in ((left, _bursts(rows)), (right, _memory(rows))):
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o", color=COLORS[name], label=NAMES[name])
        _latency(middle, name, rows)
    plan = results["meta"]["plan"]
    left.set(xscale="log", yscale="log", xlabel="subscribers (N)",
             ylabel="deliveries/s",
             title=f"burst of {plan['burst']} updates")  # fmt: skip
    middle.set(xscale="log", yscale="log", xlabel="subscribers (N)",
               ylabel="save → last delivery (ms)",
               title=f"{plan['latency_rate']:g} saves/s")  # fmt: skip
    right.set(xscale="log", xlabel="subscribers (N)", ylabel="KiB",
              title="memory per idle connection")  # fmt: skip
    right.set_ylim(bottom=0)
    for ax in (left, middle, right):
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
