"""``python -m bench.readme``: print the README's performance section from results.json.

The README states the figures as ratios against the best peer, with the machine
and the date; this writes that section from a run's results.json so that it can
be pasted as it is, and says the same as bench/results/RESULTS.md.

    python -m bench.readme [bench/results/results.json]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from bench.report.compare import machine_line
from bench.report.metrics import (
    NAMES,
    Metric,
    burst_row,
    cpu_row,
    hold_row,
    latency_row,
    memory_row,
    ratio_text,
)

RESULTS = Path(__file__).resolve().parents[1] / "results" / "results.json"


def chosen(results: dict) -> list[tuple[int, Metric]]:
    """The rows the README shows: N = 1,000 in full, bursts and memory at 5,000."""
    plan = results["meta"]["plan"]
    rate, burst = plan["latency_rate"], plan["burst"]
    rows: list[tuple[int, Metric]] = [
        (1000, burst_row(1000, burst)),
        (1000, latency_row(1000, "last", rate)),
        (1000, latency_row(1000, "first", rate)),
        (1000, cpu_row(1000, "burst", "burst", "burst")),
        (1000, cpu_row(1000, "latency", f"{rate:g} saves/s", f"{rate:g} updates/s")),
        (1000, memory_row(1000)),
        (5000, burst_row(5000, burst)),
        (5000, memory_row(5000)),
    ]
    if plan["hold"]:
        rows.append((plan["hold"], hold_row(plan["hold"])))
    return rows


def _value(metric: Metric, found: dict) -> str:
    return " / ".join(
        metric.unit(v) if v is not None else "–" for v in metric.values(found)
    )


def line(n: int, metric: Metric, results: dict) -> str | None:
    found = metric.figure(results, "pushy")
    if found is None:
        return None
    where = f"{n:,}"
    ratios = ratio_text(metric.ratios(results, "pushy"))
    cells = [
        where,
        metric.short,
        _value(metric, found),
        metric.best_text(results),
        ratios,
    ]
    return "| " + " | ".join(cells) + " |"


def loads(results: dict) -> str:
    means = [
        e["load"]["mean"] for e in results["servers"].values() if e.get("load")
    ] or [0.0]
    return f"{min(means):.1f} to {max(means):.1f}"


def section(results: dict) -> str:
    meta = results["meta"]
    when = time.strftime("%Y-%m-%d", time.gmtime(meta["started"]))
    rows = [line(n, metric, results) for n, metric in chosen(results)]
    skipped = [
        f"{NAMES.get(name, name)} was not run: {entry['skipped']}."
        for name, entry in results["servers"].items()
        if "skipped" in entry
    ]
    text = [
        "## Performance",
        "",
        f"Measured by `make bench` on {when} on {machine_line(meta)} (load average "
        f"{meta['load_before'][0]:.1f} before the run, {loads(results)} while the "
        "servers were measured, the run's own load included): one pushy gateway "
        "process against four peers, one after the other, with the same load "
        "client, the same Redis and the same updates: a plain node.js broadcaster "
        "(`ws` and `ioredis`), the least a gevent broadcaster can do, and Django "
        "Channels (daphne and channels_redis) with its defaults and tuned for the "
        "bursts. Each ratio is pushy's figure divided by the best peer's in that "
        "row (above 1 is better for deliveries/s, below 1 for the rest).",
        "",
        "| N | | pushy | best peer | pushy ÷ best peer |",
        "|---|---|---|---|---|",
        *(row for row in rows if row),
        "",
        *([" ".join(skipped), ""] if skipped else []),
        "Every figure, the peers' own, the load during each measurement and the "
        "method: [bench/results/RESULTS.md](bench/results/RESULTS.md).",
        "",
        "![deliveries/s, latency and memory against N: pushy and its peers]"
        "(bench/results/results.png)",
    ]
    return "\n".join(text)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else RESULTS
    print(section(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
