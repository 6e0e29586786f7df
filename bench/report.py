"""Turn results.json into bench/RESULTS.md (tables, ratios, targets) and the plot."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

NAMES = {"channels": "Channels", "floor": "floor", "pushy": "pushy"}
COLUMNS = ("channels", "floor", "pushy")
COLORS = {"channels": "tab:red", "floor": "tab:gray", "pushy": "tab:blue"}
NOTES_FILE = "PROFILE.md"  # hand-written findings, appended to RESULTS.md


def _rows(results: dict, name: str) -> dict[int, dict]:
    sizes = results["servers"].get(name, {}).get("sizes", {})
    return {int(n): row for n, row in sizes.items()}


def _sizes(results: dict, part: str) -> list[int]:
    found = {
        n for name in COLUMNS for n, row in _rows(results, name).items() if part in row
    }
    return sorted(found)


def _cpu(m: dict) -> str:
    return (
        f"<br><sub>CPU s: server {m['server_cpu_s']:.2f} · client "
        f"{m['client_cpu_s']:.2f} · redis {m['redis_cpu_s']:.2f} "
        f"in {m['wall_s']:.1f} s</sub>"
    )


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def _us(value: float | None) -> str:
    return "– (nothing delivered)" if value is None else f"{value:,.1f} µs"


def _ratio(mine: float | None, theirs: float | None) -> str:
    if not mine or not theirs:
        return "–"
    ratio = mine / theirs
    return f"{ratio:.2f}×" if ratio >= 0.1 else f"{ratio:.2g}×"


class Row:
    """One line of the summary: a cell per server plus pushy's ratios."""

    def __init__(
        self,
        label: str,
        pick: Callable[[dict], dict | None],
        show: Callable[[dict], str],
        value: Callable[[dict], float | None],
    ) -> None:
        self.label, self.pick, self.show, self.value = label, pick, show, value

    def render(self, results: dict) -> str:
        cells, values = [], {}
        for name in COLUMNS:
            entry = results["servers"].get(name, {})
            figure = self.pick(entry) if "skipped" not in entry else None
            if figure is None:
                cells.append("not run" if "skipped" in entry else "–")
                continue
            values[name] = self.value(figure)
            cells.append(
                self.show(figure) + (_cpu(figure) if "wall_s" in figure else "")
            )
        mine = values.get("pushy")
        ratios = [
            _ratio(mine, values.get("channels")),
            _ratio(mine, values.get("floor")),
        ]
        return "| " + " | ".join([self.label, *cells, *ratios]) + " |"


def _size(n: int, part: str) -> Callable[[dict], dict | None]:
    return lambda entry: entry.get("sizes", {}).get(str(n), {}).get(part)


def _latency_text(which: str) -> Callable[[dict], str]:
    def show(f: dict) -> str:
        text = f"{_ms(f[which]['p50_ms'])} / {_ms(f[which]['p99_ms'])} ms"
        if f["lost"] or f.get("late"):
            text += ", " + _lost(f)
        if f["updates_reaching_all"] < f["saves"]:
            text += f" ({f['saves'] - f['updates_reaching_all']} saves missed someone)"
        return text

    return show


def _lost(f: dict) -> str:
    text = "none lost"
    if f["lost"]:
        text = f"{f['lost']:,} lost ({f['lost'] / f['expected']:.1%})"
    if f.get("late"):
        text += f", {f['late']:,} late"
    return text


def summary_rows(results: dict) -> list[Row]:
    plan = results["meta"]["plan"]
    rows = []
    for n in _sizes(results, "latency"):
        for which in ("last", "first"):
            rows.append(
                Row(
                    f"{n:,} subscribers, {plan['latency_rate']:g} saves/s: "
                    f"{which} delivery p50 / p99",
                    _size(n, "latency"),
                    _latency_text(which),
                    lambda f, w=which: f[w]["p50_ms"],
                )
            )
    for n in _sizes(results, "burst"):
        rows.append(
            Row(
                f"{n:,} subscribers, burst of {plan['burst']} updates: "
                "deliveries/s, lost",
                _size(n, "burst"),
                lambda f: f"{f['per_second']:,}/s, {_lost(f)}",
                lambda f: f["per_second"],
            )
        )
        rows.append(
            Row(
                f"{n:,} subscribers, burst: server CPU per delivery",
                _size(n, "burst"),
                lambda f: _us(f["server_cpu_per_delivery_us"]),
                lambda f: f["server_cpu_per_delivery_us"],
            )
        )
    for n in _sizes(results, "connect"):
        rows.append(
            Row(
                f"memory per idle connection ({n:,} open)",
                _size(n, "connect"),
                lambda f: (
                    f"{f['bytes_per_connection'] / 1024:.1f} KiB"
                    + (f" ({f['failed']:,} failed to connect)" if f["failed"] else "")
                ),
                lambda f: f["bytes_per_connection"],
            )
        )
    if plan["hold"]:
        rows.append(
            Row(
                f"hold {plan['hold']:,} connections on one process: "
                "subscribed, update delivered, last delivery",
                _held,
                lambda f: (
                    f"{f['connect']['subscribed']:,} subscribed in "
                    f"{f['connect']['seconds']:.1f} s, {f['delivered']:,} delivered, "
                    f"last after {_ms(f['last_delivery_ms'])} ms, "
                    f"{f['connect']['bytes_per_connection'] / 1024:.1f} KiB each"
                ),
                lambda f: f["last_delivery_ms"],
            )
        )
    return rows


def _held(entry: dict) -> dict | None:
    held = entry.get("hold")
    return None if not held or "error" in held else held


def _get(results: dict, name: str, n: int, part: str) -> dict | None:
    return _rows(results, name).get(n, {}).get(part)


def targets(results: dict) -> list[str]:
    """Issue 6's targets for pushy, each met or missed, with the figures."""
    lines = []

    def check(ok: bool, text: str) -> None:
        lines.append(f"- {'met' if ok else '**missed**'}: {text}")

    for n in (1000, 5000):
        mine, floor = (
            _get(results, "pushy", n, "burst"),
            _get(results, "floor", n, "burst"),
        )
        if mine and floor:
            ratio = mine["per_second"] / floor["per_second"]
            runs = len(mine["runs_per_second"])
            check(
                ratio >= 0.8 and mine["lost_total"] == 0,
                f"burst at N={n:,}: {ratio:.2f}× the floor's deliveries/s (≥ 0.8×), "
                f"{mine['lost_total']:,} lost over {runs} bursts; "
                f"server CPU per delivery {mine['server_cpu_per_delivery_us']} µs "
                f"(floor {floor['server_cpu_per_delivery_us']} µs)",
            )
    mine = _get(results, "pushy", 1000, "latency")
    floor = _get(results, "floor", 1000, "latency")
    if mine and floor:
        p50, p99 = mine["last"]["p50_ms"], mine["last"]["p99_ms"]
        ratio = p50 / floor["last"]["p50_ms"]
        check(
            ratio <= 1.5 and p99 < 150 and not mine["lost"],
            f"last delivery at N=1,000, 20 saves/s: p50 {p50:.0f} ms = {ratio:.2f}× "
            f"the floor's (≤ 1.5×), p99 {p99:.0f} ms (< 150 ms)",
        )
    for n in (1000, 5000):
        mine = _get(results, "pushy", n, "connect")
        floor = _get(results, "floor", n, "connect")
        if mine and floor:
            ratio = mine["bytes_per_connection"] / floor["bytes_per_connection"]
            check(
                ratio <= 1.3,
                f"memory per idle connection at N={n:,}: "
                f"{mine['bytes_per_connection'] / 1024:.1f} KiB = {ratio:.2f}× the "
                "floor's (≤ 1.3×)",
            )
    held = _held(results["servers"].get("pushy", {}))
    if held:
        check(
            held["connect"]["subscribed"] == held["n"] == held["delivered"],
            f"{held['n']:,} connections held by one process: "
            f"{held['connect']['subscribed']:,} subscribed, "
            f"{held['delivered']:,} got the update",
        )
    return lines


def failures(results: dict) -> list[tuple[str, str, str]]:
    found = []
    for name, entry in results["servers"].items():
        for n, row in entry.get("sizes", {}).items():
            if "error" in row:
                found.append((name, f"N={int(n):,}", row["error"]))
        if "error" in entry.get("hold", {}):
            found.append((name, "hold test", entry["hold"]["error"]))
    return found


def markdown(results: dict, notes: str = "") -> str:
    meta = results["meta"]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(meta["started"]))
    plan = meta["plan"]
    head = [
        "# Benchmark results",
        "",
        f"Written by `make bench` (`python -m bench`) on {when} at commit "
        f"{meta.get('commit', '?')}: {meta['cpus']} cores, "
        f"the load client on the same machine, all servers on one private Redis, one "
        f"after the other in one run of {meta['seconds'] / 60:.1f} minutes. "
        f"Load average before the run: {meta['load_before'][0]:.2f}.",
    ]
    if meta.get("note"):
        head += ["", meta["note"]]
    skipped = {n: e["skipped"] for n, e in results["servers"].items() if "skipped" in e}
    for name, why in skipped.items():
        head += ["", f"{NAMES[name]} was not run: {why}."]
    for name, where, error in failures(results):
        head += ["", f"**{NAMES[name]}, {where}, failed**: `{error}`"]
    table = [
        "",
        "![deliveries/s and latency against N](results.png)",
        "",
        "## Summary",
        "",
        "Ratios are pushy's figure divided by the other's (for deliveries/s higher "
        "is better, for the rest lower is). Under each figure: the CPU seconds the "
        "server, the load client and Redis used during that measurement, and its "
        "wall time; they share the cores, so CPU per delivery is what tells designs "
        f"apart once the machine is saturated. Bursts: median of "
        f"{plan['burst_repeats']} on the same connections.",
        "",
        "| | " + " | ".join(NAMES[c] for c in COLUMNS) + " | pushy ÷ Channels "
        "| pushy ÷ floor |",
        "|---|---|---|---|---|---|",
        *(row.render(results) for row in summary_rows(results)),
        "",
        "## Targets (issue 6)",
        "",
        *(targets(results) or ["- pushy was not measured"]),
        "",
        "## Method",
        "",
        METHOD.strip(),
        "",
    ]
    tail = ["## Profile", "", notes.strip(), ""] if notes.strip() else []
    return "\n".join(head + table + tail)


METHOD = """
- Servers: **pushy** is `manage.py runpushy` with its hardening on (bounded send
  queues and limits at their defaults, an origin allow-list, the session cookie
  looked up and an `AUTHORIZE` callable asked on every subscribe, heartbeats every
  5 s); **Channels** is daphne + channels_redis (`RedisChannelLayer`, defaults) with
  an `AsyncJsonWebsocketConsumer` behind `AuthMiddlewareStack`, a group per URL, fed
  by a bridge process that turns pushy's Redis messages into `group_send` (both
  processes count as the server); the **floor** is a minimal gevent +
  gevent-websocket + redis-py subscribe-and-forward server (`bench/floor.py`).
- Each (server, N) starts a fresh server; one warm-up save goes through it; then
  the load client (`bench/client.py`, one epoll loop per process, at most 2,500
  connections per process) opens N connections, each subscribing to the collection
  `/api/item/` with the session cookie and an Origin header.
- Memory per idle connection: the server's RSS (with its child processes) after
  the N connections subscribed, minus before, divided by N.
- Latency: a separate Django process saves item 1 with `save()` at a fixed rate;
  the title carries the wall-clock time taken just before `save()`; the client
  records the first and last receive time of each save across all connections.
  Only saves that reached every connection count in the percentiles; losses are
  shown beside them.
- Burst: a separate Django process saves 200 items in one transaction; pushy's
  publisher sends the 200 updates in one pipeline at commit. Deliveries/s is the
  number delivered divided by the time from the commit to the last delivery; lost
  is exactly expected (N × 200) minus delivered.
- Hold: N connections on one process, then one save; every connection must get it.
"""


def plot(results: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no plot")
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in COLUMNS:
        rows = _rows(results, name)
        bursts = sorted(
            (n, r["burst"]["per_second"])
            for n, r in rows.items()
            if "burst" in r and r["burst"]["per_second"] > 0
        )
        if bursts:
            xs, ys = zip(*bursts, strict=True)
            left.plot(xs, ys, marker="o", color=COLORS[name], label=NAMES[name])
        lat = sorted(
            (n, r["latency"]["last"]) for n, r in rows.items() if "latency" in r
        )
        lat = [(n, s) for n, s in lat if s["p50_ms"] is not None]
        if lat:
            xs = [n for n, _ in lat]
            line = right.plot(
                xs, [s["p50_ms"] for _, s in lat], marker="o", color=COLORS[name]
            )[0]
            right.plot(
                xs, [s["p99_ms"] for _, s in lat], marker="x", linestyle="--",
                color=line.get_color(),
            )  # fmt: skip
            line.set_label(f"{NAMES[name]} (p50 solid, p99 dashed)")
    left.set(xscale="log", yscale="log", xlabel="subscribers (N)",
             ylabel="deliveries/s",
             title=f"burst of {results['meta']['plan']['burst']} updates")  # fmt: skip
    right.set(xscale="log", yscale="log", xlabel="subscribers (N)",
              ylabel="save → last delivery (ms)",
              title=f"{results['meta']['plan']['latency_rate']:g} saves/s")  # fmt: skip
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(results: dict, out: Path) -> None:
    notes_path = out / NOTES_FILE
    notes = notes_path.read_text() if notes_path.exists() else ""
    (out / "RESULTS.md").write_text(markdown(results, notes))
    plot(results, out / "results.png")
