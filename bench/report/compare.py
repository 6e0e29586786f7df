"""Turn results.json into bench/results/RESULTS.md (tables, ratios, targets), a plot."""

from __future__ import annotations

import time
from pathlib import Path

from bench.report.metrics import (
    COLUMNS,
    NAMES,
    PEERS,
    Metric,
    burst_row,
    figure,
    held,
    latency_row,
    metrics,
    ratio_text,
)
from bench.report.plot import plot

NOTES_FILE = "PROFILE.md"  # hand-written findings, appended to RESULTS.md
# Issue 12's targets.
FIRST_P99_OF_FLOOR = 1.2  # first-delivery p99 at most this times the floor's
MEMORY_KIB = 10.0  # memory per idle connection at most this
# "Keep the burst figures at least where they are": issue 12 measured pushy at
# about 5× the best peer (node.js ws) in a burst at N = 1,000.
BURST_OF_BEST_PEER = 5.0


def _cell(metric: Metric, results: dict, name: str) -> str:
    entry = results["servers"].get(name, {})
    if "skipped" in entry:
        return "not run"
    found = metric.figure(results, name)
    if found is None:
        return "–"
    return (
        f"{metric.show(found)}<br><sub>{ratio_text(metric.ratios(results, name))}</sub>"
    )


def summary(results: dict) -> list[str]:
    head = "| | best peer | " + " | ".join(NAMES[c] for c in COLUMNS) + " |"
    lines = [head, "|---" * (len(COLUMNS) + 2) + "|"]
    for metric in metrics(results):
        cells = [_cell(metric, results, name) for name in COLUMNS]
        best = metric.best_text(results)
        lines.append("| " + " | ".join([metric.label, best, *cells]) + " |")
    return lines


def _cost(m: dict) -> str:
    return (
        f"{m['server_cpu_s']:.2f} · {m['client_cpu_s']:.2f} · "
        f"{m['redis_cpu_s']:.2f} in {m['wall_s']:.1f} s"
    )


def costs(results: dict) -> list[str]:
    """CPU seconds of server, load client and Redis, and wall time, per measurement."""
    head = "| measurement | " + " | ".join(NAMES[c] for c in COLUMNS) + " |"
    lines = [head, "|---" * (len(COLUMNS) + 1) + "|"]
    parts = [("connect", "connecting {n:,}"), ("latency", "{n:,} subscribers, saves")]
    parts.append(("burst", "{n:,} subscribers, median burst"))
    sizes = sorted(
        {int(n) for e in results["servers"].values() for n in e.get("sizes", {})}
    )
    for part, label in parts:
        for n in sizes:
            cells = []
            for name in COLUMNS:
                found = figure(results, name, n, part)
                cells.append(_cost(found) if found else "–")
            if any(c != "–" for c in cells):
                lines.append(f"| {label.format(n=n)} | " + " | ".join(cells) + " |")
    holds = [held(results["servers"].get(name, {})) for name in COLUMNS]
    if any(holds):
        cells = [_cost(h) if h else "–" for h in holds]
        lines.append("| hold, one update | " + " | ".join(cells) + " |")
    return lines


def loads(results: dict) -> list[str]:
    """The 1-minute load average before and during each server's measurements."""
    lines = [
        "| server | load before | load during: mean / max | minutes |",
        "|---|---|---|---|",
    ]
    for name in COLUMNS:
        entry = results["servers"].get(name, {})
        load = entry.get("load")
        if load:
            lines.append(
                f"| {NAMES[name]} | {load['before']:.2f} | {load['mean']:.2f} / "
                f"{load['max']:.2f} | {entry.get('seconds', 0) / 60:.1f} |"
            )
    return lines


class Targets:
    """Lines of ``- met: ...`` / ``- **missed**: ...``."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def check(self, ok: bool, text: str) -> None:
        self.lines.append(f"- {'met' if ok else '**missed**'}: {text}")


def _latency_targets(results: dict, out: Targets) -> None:
    rate = results["meta"]["plan"]["latency_rate"]
    mine = figure(results, "pushy", 1000, "latency")
    if not mine:
        return
    last, first = mine["last"], mine["first"]
    best_p50, best_p99 = latency_row(1000, "last", rate).best(results)
    if best_p99 is None:
        out.check(False, "last delivery at N=1,000: no peer delivered every save")
    else:
        p50_text = f"{best_p50[1]:.0f} ms, {NAMES[best_p50[0]]}" if best_p50 else "–"
        out.check(
            last["p99_ms"] <= best_p99[1] and not mine["lost"],
            f"last delivery at N=1,000, {rate:g} saves/s: p99 {last['p99_ms']:.0f} ms "
            f"≤ the best peer's ({best_p99[1]:.0f} ms, {NAMES[best_p99[0]]}); "
            f"p50 {last['p50_ms']:.0f} ms (best peer: {p50_text})",
        )
    floor = figure(results, "floor", 1000, "latency")
    if not floor:
        return
    p99, floor_p99 = first["p99_ms"], floor["first"]["p99_ms"]
    out.check(
        p99 <= FIRST_P99_OF_FLOOR * floor_p99,
        f"first delivery at N=1,000: p99 {p99:.0f} ms = {p99 / floor_p99:.2f}× "
        f"the floor's {floor_p99:.0f} ms (≤ {FIRST_P99_OF_FLOOR}×); p50 "
        f"{first['p50_ms']:.0f} ms (floor {floor['first']['p50_ms']:.0f} ms)",
    )
    p50, floor_p50 = last["p50_ms"], floor["last"]["p50_ms"]
    out.check(
        p50 <= 1.5 * floor_p50,
        f"(issue 6) last delivery at N=1,000: p50 {p50:.0f} ms = "
        f"{p50 / floor_p50:.2f}× the floor's (≤ 1.5×)",
    )


def _memory_targets(results: dict, out: Targets) -> None:
    for n in (1000, 5000):
        mine = figure(results, "pushy", n, "connect")
        if not mine:
            continue
        kib = mine["bytes_per_connection"] / 1024
        node = figure(results, "node-ws", n, "connect")
        node_kib = node["bytes_per_connection"] / 1024 if node else None
        below = node_kib is None or kib < node_kib
        versus = f"node.js ws {node_kib:.1f} KiB" if node else "node.js ws not run"
        out.check(
            kib <= MEMORY_KIB and below,
            f"memory per idle connection at N={n:,}: {kib:.1f} KiB "
            f"(≤ {MEMORY_KIB:g} KiB and below node.js ws: {versus})",
        )


def _burst_targets(results: dict, out: Targets) -> None:
    for n in (1000, 5000):
        mine = figure(results, "pushy", n, "burst")
        if not mine:
            continue
        row = burst_row(n, results["meta"]["plan"]["burst"])
        (best,) = row.best(results)
        runs = mine.get("bursts", len(mine["runs_per_second"]))
        if best is None:
            out.check(False, f"burst at N={n:,}: no peer delivered the whole burst")
            continue
        ratio = mine["per_second"] / best[1]
        out.check(
            ratio >= BURST_OF_BEST_PEER and mine["lost_total"] == 0,
            f"burst at N={n:,}: {mine['per_second']:,}/s = {ratio:.2f}× the best "
            f"peer's ({NAMES[best[0]]}, {best[1]:,.0f}/s; ≥ {BURST_OF_BEST_PEER:g}×), "
            f"{mine['lost_total']:,} lost over {runs} bursts; server CPU per "
            f"delivery {mine['server_cpu_per_delivery_us']} µs",
        )


def targets(results: dict) -> list[str]:
    """Issue 12's targets for pushy (and issue 6's that still stand)."""
    out = Targets()
    _latency_targets(results, out)
    _memory_targets(results, out)
    _burst_targets(results, out)
    hold = held(results["servers"].get("pushy", {}))
    if hold:
        out.check(
            hold["connect"]["subscribed"] == hold["n"] == hold["delivered"],
            f"(issue 6) {hold['n']:,} connections held by one process: "
            f"{hold['connect']['subscribed']:,} subscribed, "
            f"{hold['delivered']:,} got the update",
        )
    return out.lines


def failures(results: dict) -> list[tuple[str, str, str]]:
    found = []
    for name, entry in results["servers"].items():
        for n, row in entry.get("sizes", {}).items():
            if "error" in row:
                found.append((name, f"N={int(n):,}", row["error"]))
        if "error" in entry.get("hold", {}):
            found.append((name, "hold test", entry["hold"]["error"]))
    return found


def machine_line(meta: dict) -> str:
    m = meta.get("machine", {})
    node = f", node.js {m['node']}" if m.get("node") else ""
    return (
        f"{m.get('cpu', '?')}, {meta['cpus']} cores, {m.get('memory_gib', '?')} GiB, "
        f"Linux {m.get('kernel', '?')}, Python {m.get('python', '?')}{node}"
    )


def header(results: dict) -> list[str]:
    meta = results["meta"]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(meta["started"]))
    head = [
        "# Benchmark results",
        "",
        f"Written by `make bench` (`python -m bench`) on {when} at commit "
        f"{meta.get('commit', '?')}, on {machine_line(meta)}; the load client on the "
        f"same machine, all servers on one private Redis, one after the other in one "
        f"run of {meta['seconds'] / 60:.1f} minutes. Load average (1 minute) before "
        f"the run: {meta['load_before'][0]:.2f}; during each server's measurements: "
        "see [Load](#load).",
    ]
    if meta.get("note"):
        head += ["", meta["note"]]
    for name, entry in results["servers"].items():
        if "skipped" in entry:
            head += [
                "",
                f"**{NAMES.get(name, name)} was not run**: {entry['skipped']}.",
            ]
    for name, where, error in failures(results):
        head += ["", f"**{NAMES.get(name, name)}, {where}, failed**: `{error}`"]
    return head


def _warm_up(plan: dict) -> str:
    if not plan.get("burst_warm_up"):
        return ""
    return (
        ", after one that is not counted (the first meets cold caches: pushy's "
        "authorization, node.js's JIT; its loss counts, its rate is in results.json)"
    )


def _limits(plan: dict) -> str:
    """``Channels and Channels tuned run N ≤ 1,000 only``, for the limits in force."""
    by_limit: dict[int, list[str]] = {}
    for name, n in plan.get("max_size", {}).items():
        if name in plan["servers"] and any(size > n for size in plan["sizes"]):
            by_limit.setdefault(n, []).append(NAMES.get(name, name))
    return "".join(
        f" {' and '.join(names)} {'runs' if len(names) == 1 else 'run'} "
        f"N ≤ {n:,} only (see Method)."
        for n, names in by_limit.items()
    )


def markdown(results: dict, notes: str = "") -> str:
    plan = results["meta"]["plan"]
    body = [
        "",
        "![deliveries/s, latency and memory against N](results.png)",
        "",
        "## Summary",
        "",
        "Under each figure: that server's figure divided by the **best peer**'s "
        f"(the best of {', '.join(NAMES[p] for p in PEERS)} in that row, among "
        "those that lost nothing; 1.00× is the best peer itself). For deliveries/s "
        "above 1 is better, for the rest below 1 is; a p50 / p99 pair has a ratio "
        "each. Server CPU per delivery is what tells designs apart once the 2 cores "
        f"are saturated. Bursts: median of up to {plan['burst_repeats']} on the same "
        f"connections{_warm_up(plan)} (one only when a burst takes longer than "
        f"{plan['burst_repeat_within']:g} s).{_limits(plan)}",
        "",
        *summary(results),
        "",
        "## Targets (issue 12)",
        "",
        *(targets(results) or ["- pushy was not measured"]),
        "",
        "## Load",
        "",
        "The machine's 1-minute load average before and while each server was "
        "measured. It includes this run's own processes (the server, the load "
        "client, Redis, the saving process), which alone keep 2 cores busy during "
        "a burst; a load well above 2 means something else ran too.",
        "",
        *loads(results),
        "",
        "## CPU used",
        "",
        "CPU seconds of the server · the load client · Redis during each "
        "measurement, and its wall time.",
        "",
        *costs(results),
        "",
        "## Method",
        "",
        METHOD.strip(),
        "",
    ]
    tail = ["## Profile", "", notes.strip(), ""] if notes.strip() else []
    return "\n".join(header(results) + body + tail)


METHOD = """
- Servers: **pushy** is `manage.py runpushy` with its hardening on (bounded send
  queues and limits at their defaults, an origin allow-list, the session cookie
  looked up and an `AUTHORIZE` callable asked on every subscribe, heartbeats every
  5 s). The peers do none of that but the Channels consumer's authorization:
  **node.js ws** (`bench/peers/node_ws/server.js`) is a plain subscribe-and-forward
  server on node.js with `ws` and `ioredis`, each update encoded once and sent to
  every subscriber; the **gevent floor** (`bench/peers/floor.py`) is the same on
  gevent + gevent-websocket + redis-py; **Channels** is daphne + channels_redis
  (`RedisChannelLayer`, defaults: capacity 100) with an `AsyncJsonWebsocketConsumer`
  behind `AuthMiddlewareStack`, a group per URL, fed by a bridge process that turns
  pushy's Redis messages into `group_send` (both processes count as the server);
  **Channels tuned** is the same with the layer's capacity raised to 1,000, above
  the burst (`bench/peers/channels/tuned_settings.py`). All speak wire protocol v1 and
  send the same update body. Channels delivers about 2,000 updates a second here,
  so it runs N ≤ 1,000: at 5,000 one burst would take minutes.
- Fairness: one run, one machine, one private Redis, one load client; each
  server gets the same connections, saves and bursts, one server at a time.
- Each (server, N) starts a fresh server; one warm-up save goes through it; then
  the load client (`bench/harness/client.py`, one epoll loop per process, at most 2,500
  connections per process) opens N connections, each subscribing to the collection
  `/api/item/` with the session cookie and an Origin header.
- Memory per idle connection: the server's RSS (with its child processes) after
  the N connections subscribed, minus before, divided by N.
- Latency: a separate Django process saves item 1 with `save()` at a fixed rate
  (600 saves at 20/s, so a p99 is the sixth-worst save, not decided by one stall
  of the machine); the title carries the wall-clock time taken just before
  `save()`; the client records the first and last receive time of each save
  across all connections. Only saves that reached every connection count in the
  percentiles (nearest rank); losses are shown beside them.
- Burst: a separate Django process saves 200 items in one transaction; pushy's
  publisher sends the 200 updates in one pipeline at commit. Deliveries/s is the
  number delivered divided by the time from the commit to the last delivery; lost
  is exactly expected (N × 200) minus delivered.
- Server CPU per delivery: the server's CPU time (all its processes and threads)
  during the measurement divided by the deliveries.
- Hold: N connections on one process, then one save; every connection must get it.
"""


def write(results: dict, out: Path) -> None:
    notes_path = out / NOTES_FILE
    notes = notes_path.read_text() if notes_path.exists() else ""
    (out / "RESULTS.md").write_text(markdown(results, notes))
    plot(results, out / "results.png")
