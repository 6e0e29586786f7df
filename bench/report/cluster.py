"""bench/results/CLUSTER.md from bench.cluster's results, and the sizing model.

The table gives each layout's figure and its ratio against the better of the
two (among those that lost nothing); ``sizing()`` turns the cluster's measured
costs into shards and gateways for a target load (docs/deployment.md, "Sizing a
cluster", quotes it).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

NAMES = ("single", "cluster")


def _get(entry: dict, *path: str):
    for key in path:
        if not isinstance(entry, dict) or key not in entry:
            return None
        entry = entry[key]
    return entry


@dataclass(frozen=True)
class Row:
    label: str
    values: Callable[[dict], list]  # one or two figures (p50 / p99)
    unit: str
    higher_better: bool = False
    note: Callable[[dict], str] = lambda e: ""
    losses: Callable[[dict], int] = lambda e: 0


def _lost_burst(e: dict) -> int:
    return (_get(e, "burst", "lost_total") or 0) + (_get(e, "burst", "closed") or 0)


def _lost_latency(e: dict) -> int:
    return _get(e, "latency", "lost") or 0


def rows(results: dict) -> list[Row]:
    plan = results["meta"]["plan"]
    b, r = plan["burst"], plan["rate"]
    return [
        Row(f"burst of {b} updates: deliveries/s (median)",
            lambda e: [_get(e, "burst", "per_second")], "/s", True,
            lambda e: f"{_get(e, 'burst', 'lost_total'):,} lost", _lost_burst),
        Row("burst: gateway CPU per delivery",
            lambda e: [_get(e, "burst", "gateway_us_per_delivery")], "µs",
            losses=_lost_burst),
        Row(f"{r:g} saves/s, one at a time: last delivery p50 / p99",
            lambda e: [_get(e, "latency", "last", "p50_ms"),
                       _get(e, "latency", "last", "p99_ms")], "ms",
            note=lambda e: f"{_get(e, 'latency', 'lost'):,} lost",
            losses=_lost_latency),
        Row(f"{r:g} saves/s: first delivery p50 / p99",
            lambda e: [_get(e, "latency", "first", "p50_ms"),
                       _get(e, "latency", "first", "p99_ms")], "ms",
            losses=_lost_latency),
        Row(f"{r:g} saves/s: gateway CPU per delivery",
            lambda e: [_get(e, "latency", "gateway_us_per_delivery")], "µs",
            losses=_lost_latency),
        Row("burst: Redis CPU per publish, masters' mean",
            lambda e: [_get(e, "burst", "redis", "us_per_publish")], "µs",
            losses=_lost_burst),
        Row("burst: Redis CPU per publish on the busiest master",
            lambda e: [_get(e, "burst", "redis", "busiest", "us_per_publish")], "µs",
            note=lambda e: f"{_get(e, 'burst', 'redis', 'busiest_share'):.0%} "
            "of the publishes", losses=_lost_burst),
        Row("burst: Redis CPU per update, all masters",
            lambda e: [_get(e, "burst", "redis", "master_us_per_update")], "µs",
            losses=_lost_burst),
        *(row for kind in ("singles", "burst") for row in receive_rows(kind)),
        Row("gateway memory per connection",
            lambda e: [_kib(_get(e, "connect", "bytes_per_connection"))], "KiB"),
    ]  # fmt: skip


def receive_rows(kind: str) -> list[Row]:
    how = "one per transaction" if kind == "singles" else "in one transaction"
    return [
        Row(f"receiving, saves {how}: gateway CPU per update received",
            lambda e: [_get(e, "receive_2", kind, "gateway_us_per_received")], "µs"),
        Row(f"receiving, saves {how}: Redis CPU per update, all masters, 1 / 2 "
            "gateways listening",
            lambda e: [_get(e, "receive_1", kind, "redis", "master_us_per_update"),
                       _get(e, "receive_2", kind, "redis", "master_us_per_update")],
            "µs"),
    ]  # fmt: skip


def _kib(value: float | None) -> float | None:
    return None if value is None else value / 1024


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "–"
    if unit == "/s":
        return f"{value:,.0f}"
    return f"{value:,.1f}" if value >= 10 or unit == "KiB" else f"{value:,.2f}"


def cells(row: Row, layouts: dict) -> list[str]:
    """Each layout's figure(s) and ratio(s) against the better layout."""
    ran = {n: e for n, e in layouts.items() if "skipped" not in e}
    figures = {n: row.values(e) for n, e in ran.items()}
    width = max((len(v) for v in figures.values()), default=1)
    clean = [n for n in ran if not row.losses(ran[n])] or list(ran)
    best = []
    for i in range(width):
        found = [figures[n][i] for n in clean if figures[n][i] is not None]
        pick = max if row.higher_better else min
        best.append(pick(found) if found else None)
    out = []
    for name in NAMES:
        if name not in layouts:
            continue
        if name not in ran:
            out.append("skipped")
            continue
        values = figures[name]
        text = " / ".join(_fmt(v, row.unit) for v in values) + " " + row.unit
        note = row.note(ran[name])
        ratios = " / ".join(
            "–" if v is None or not best[i] else f"{v / best[i]:.2f}×"
            for i, v in enumerate(values)
        )
        out.append(f"{text}{', ' + note if note else ''}<br><sub>{ratios}</sub>")
    return out


def table(results: dict) -> str:
    layouts = results["layouts"]
    names = [n for n in NAMES if n in layouts]
    head = "| | " + " | ".join(layouts[n]["label"] for n in names) + " |"
    lines = [head, "|---" * (len(names) + 1) + "|"]
    for row in rows(results):
        lines.append(f"| {row.label} | " + " | ".join(cells(row, layouts)) + " |")
    return "\n".join(lines)


PHASES = {
    "receive_1.singles": "receiving, 1 gateway, one per transaction",
    "receive_1.burst": "receiving, 1 gateway, one transaction",
    "receive_2.singles": "receiving, 2 gateways, one per transaction",
    "receive_2.burst": "receiving, 2 gateways, one transaction",
    "latency": "latency",
    "burst": "bursts",
}


def masters_table(results: dict) -> str:
    lines = [
        "| layout | phase | per master: publishes, CPU ms, µs per publish | "
        "replicas' CPU per update |",
        "|---|---|---|---|",
    ]
    for name in NAMES:
        entry = results["layouts"].get(name, {})
        for phase in PHASES:
            redis = _get(entry, *phase.split("."), "redis")
            if not redis:
                continue
            per = "; ".join(
                f"{m['publishes']:,}, {m['cpu_ms']:.1f}, "
                + _fmt(m["us_per_publish"], "")
                for m in redis["masters"]
            )
            replica = redis.get("replica_us_per_update")
            lines.append(
                f"| {entry['label']} | {PHASES[phase]} | {per} | "
                f"{'–' if replica is None else f'{replica:.1f} µs'} |"
            )
    return "\n".join(lines)


def load_table(results: dict) -> str:
    lines = ["| layout | load during: mean / max | minutes |", "|---|---|---|"]
    for name in NAMES:
        entry = results["layouts"].get(name)
        if entry:
            load = entry["load"]
            lines.append(
                f"| {entry['label']} | {load['mean']} / {load['max']} | "
                f"{entry['seconds'] / 60:.1f} |"
            )
    return "\n".join(lines)


# -- the sizing model --------------------------------------------------------

BUCKETS = 12  # pushy's buckets today: more masters than this carry nothing more


@dataclass(frozen=True)
class Target:
    connections: int = 1_000_000
    updates: float = 50_000  # updates published per second, site-wide
    fan_out: float = 20  # subscribers per update, on average
    headroom: float = 0.5  # the share of each core planned to be busy
    ping_interval: float = 25  # PING_INTERVAL's default


def inputs(results: dict, kind: str) -> dict:
    """The cluster's measured costs the model uses (µs, bytes), with updates
    published one per transaction (``kind`` "singles") or pipelined ("burst")."""
    e, meta = results["layouts"]["cluster"], results["meta"]
    # Per update, not per publish: a layout may publish an update more than once.
    r1 = _get(e, "receive_1", kind, "redis", "master_us_per_update")
    r2 = _get(e, "receive_2", kind, "redis", "master_us_per_update")
    per_gateway = max(0.0, r2 - r1)
    received_us = _get(e, "receive_2", kind, "gateway_us_per_received")
    lat = e["latency"]
    # A delivery's own cost: the latency run's CPU less receiving its updates,
    # which came one at a time (so at the one-per-transaction cost, whichever
    # way the model's updates are published: a page gets its few one by one).
    single = _get(e, "receive_2", "singles", "gateway_us_per_received")
    delivery = (lat["gateway_cpu_s"] * 1e6 - lat["received"] * single) / max(
        lat["delivered"], 1
    )
    conns = _get(e, "connect", "connections") / _get(e, "connect", "gateways")
    idle = _get(e, "connect", "idle_cpu_per_gateway") - _get(
        e, "receive_2", "idle_cpu_per_gateway"
    )
    return {
        # All masters' CPU per update: with no gateway listening, and what each
        # listening gateway adds (its copy of the message).
        "redis_base_us": round(max(r1 - per_gateway, 0.0), 1),
        "redis_per_gateway_us": round(per_gateway, 1),
        # The busiest master's share of the masters' CPU in the bursts.
        "busiest_share": _get(e, "burst", "redis", "busiest_cpu_share"),
        "masters": len(_get(e, "burst", "redis", "masters") or []),
        "gateway_received_us": received_us,
        "gateway_delivery_us": round(max(delivery, 0.0), 2),
        # Heartbeats: measured at the bench's PING_INTERVAL, per connection.
        "idle_us_per_connection_s": round(max(idle, 0.0) / conns * 1e6, 2),
        "idle_ping_interval": meta.get("ping_interval", 5),
        "bytes_per_connection": _get(e, "connect", "bytes_per_connection"),
    }


def gateway_busy(given: dict, target: Target, gateways: int, fraction: float) -> float:
    """The share of its core each of ``gateways`` processes is busy."""
    idle = given["idle_us_per_connection_s"] * (
        given["idle_ping_interval"] / target.ping_interval
    )
    return (
        fraction * target.updates * given["gateway_received_us"]
        + target.updates * target.fan_out / gateways * given["gateway_delivery_us"]
        + target.connections / gateways * idle
    ) / 1e6


def sizing(given: dict, target: Target, fraction: Callable[[int], float]) -> dict:
    """Gateway processes G and masters S for ``target``; ``fraction(G)``: the
    share of the site's updates each gateway receives (1 when every gateway
    has list subscribers of every model, 1/G at best: interest-based
    subscription with each URL's pages on one gateway)."""
    receiving = target.updates * given["gateway_received_us"] / 1e6
    if fraction(10**6) * receiving >= target.headroom:
        # Receiving alone fills each gateway's core, however many there are.
        return {
            "feasible": False,
            "receiving_busy": round(receiving, 2),
            "max_updates": round(target.headroom / given["gateway_received_us"] * 1e6),
        }
    gateways = 1
    while gateway_busy(given, target, gateways, fraction(gateways)) > target.headroom:
        gateways += 1
    # Each publish is written to every gateway listening on its channel.
    listening = max(1.0, fraction(gateways) * gateways)
    per_update = given["redis_base_us"] + listening * given["redis_per_gateway_us"]
    # The busiest master's share, measured on 3, as a factor over an even one.
    # (per_update is all masters' CPU per update: one master's if S = 1.)
    skew = given["busiest_share"] * given["masters"]
    busiest = target.updates * per_update * skew / 1e6  # on one master: cores
    return {
        "feasible": True,
        "gateways": gateways,
        "gateway_busy": round(
            gateway_busy(given, target, gateways, fraction(gateways)), 3
        ),
        "listening": round(listening, 1),
        "redis_us_per_update": round(per_update, 1),
        "skew": round(skew, 2),
        "masters": max(1, math.ceil(busiest / target.headroom)),
        "memory_gib": round(
            target.connections * given["bytes_per_connection"] / 2**30, 1
        ),
    }


def model(results: dict, target: Target = Target()) -> dict:
    """Sizes for ``target``, per way of publishing and share received."""
    found: dict = {"target": target.__dict__}
    for kind in ("singles", "burst"):
        given = inputs(results, kind)
        found[kind] = {
            "inputs": given,
            "every": sizing(given, target, lambda g: 1.0),
            "interest": sizing(given, target, lambda g: 1.0 / g),
        }
    return found


# -- the page ----------------------------------------------------------------


def summary(results: dict) -> dict:
    """A line of figures per layout, for the terminal and the smoke test."""
    out = {}
    for name, e in results["layouts"].items():
        if "skipped" in e:
            out[name] = {"skipped": e["skipped"]}
            continue
        out[name] = {
            "connections": _get(e, "connect", "connections"),
            "burst_per_second": _get(e, "burst", "per_second"),
            "burst_lost": _get(e, "burst", "lost_total"),
            "latency_lost": _get(e, "latency", "lost"),
            "latency_reaching_all": _get(e, "latency", "updates_reaching_all"),
            "last_p99_ms": _get(e, "latency", "last", "p99_ms"),
            "gateway_us_per_delivery": _get(e, "burst", "gateway_us_per_delivery"),
            "redis_us_per_publish": _get(e, "burst", "redis", "us_per_publish"),
            "busiest_us_per_publish": _get(
                e, "burst", "redis", "busiest", "us_per_publish"
            ),
        }
    return out


def render(results: dict) -> str:
    meta, plan = results["meta"], results["meta"]["plan"]
    m = meta["machine"]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(meta["started"]))
    parts = [
        "# Redis Cluster against one Redis\n",
        f"Written by `python -m bench.cluster` on {when} at commit {meta['commit']}, "
        f"on {m['cpu']}, {m['cpus']} cores, Python {m['python']}, in one run of "
        f"{meta['seconds'] / 60:.1f} minutes. Load average (1 minute) before the "
        f"run: {meta['load_before']}; during each layout: see Load. "
        + (meta.get("note") or ""),
        "",
        f"The same load on each layout, one after the other on this machine: "
        f"{plan['connections']:,} connections split over 2 `runpushy` gateways, "
        f"each subscribed to one URL of a mix of {len(meta['mix'])} (a fifth on "
        "the list `/api/item/`, the rest on items 1-10 by a Zipf law); saves at "
        f"{plan['rate']:g}/s one at a time ({plan['latency_saves']} of them, items "
        f"1-10 in turn), then a warm-up burst and {plan['bursts']} counted bursts of "
        f"{plan['burst']} saves in one transaction. Receiving (before the load "
        "connects, each gateway holding one client of the list: "
        f"{plan['receive']:,} saves at {plan['receive_rate']:g}/s, one per "
        "transaction, items in turn, then as many in one transaction) gives what "
        "receiving an update costs a gateway (its one delivery included) and what "
        "an update costs Redis with 1 and 2 gateways listening. Redis CPU is each "
        "node's `INFO cpu` around the measurement less its idle CPU over as long; "
        "publishes are its PUBLISH and SPUBLISH calls (`INFO commandstats`). "
        "Under each figure: its ratio to the better layout's (among those that "
        "lost nothing).",
        "",
        table(results),
        "",
        "## Each master",
        "",
        "Publishes, CPU (ms) and CPU per publish (µs) of each master, in port order.",
        "",
        masters_table(results),
        "",
        "## Load",
        "",
        "The 1-minute load average while each layout ran (its own processes "
        "included: 2 gateways, 2 load clients, the saving process, Redis).",
        "",
        load_table(results),
        "",
        "## What the machine limits",
        "",
        "Everything shares 2 cores: the gateways, the load clients, the saving "
        "process and every Redis node (7 processes for the cluster). The cluster "
        "cannot be faster here than one Redis (its masters do not get cores of "
        "their own); what this run measures is the cost of each publish on each "
        "master and of each update and delivery in each gateway, which the "
        "sizing model scales. The lead may re-run it on a quiet machine.",
    ]
    if "skipped" not in results["layouts"].get("cluster", {"skipped": 1}):
        parts += ["", sizing_text(model(results))]
    return "\n".join(parts) + "\n"


def sizing_text(found: dict) -> str:
    t = found["target"]
    lines = [
        "## Sizing (the model of docs/deployment.md, from these figures)",
        "",
        f"Target: {t['connections']:,} connections, {t['updates']:,.0f} updates/s, "
        f"{t['fan_out']:g} subscribers per update, each core at most "
        f"{t['headroom']:.0%} busy, PING_INTERVAL {t['ping_interval']:g} s "
        "(bench/report/cluster.py, `sizing()`).",
        "",
        "| updates published | each gateway receives | gateway processes | masters |",
        "|---|---|---|---|",
    ]
    for kind, how in (("singles", "one per transaction"), ("burst", "pipelined")):
        for key, label in (("every", "every update"), ("interest", "1/G")):
            lines.append(f"| {how} | {label} | {_sized(found[kind][key])} |")
    lines += ["", "Inputs (µs; bytes), from the cluster's columns:", ""]
    for kind, how in (("singles", "one per transaction"), ("burst", "pipelined")):
        given = ", ".join(f"{k} {v}" for k, v in found[kind]["inputs"].items())
        lines.append(f"- {how}: {given}")
    return "\n".join(lines) + "\n"


def _sized(s: dict) -> str:
    if not s["feasible"]:
        return (
            f"none: receiving every update takes {s['receiving_busy']:.2f} of a "
            f"core (at most {s['max_updates']:,} updates/s) | –"
        )
    masters = s["masters"]
    over = f" (more than the {BUCKETS} buckets)" if masters > BUCKETS else ""
    return (
        f"{s['gateways']:,} ({s['gateway_busy']:.0%} busy) | {masters}{over}, "
        f"{s['redis_us_per_update']} µs per update"
    )


def write(results: dict, out: Path) -> None:
    (out / "CLUSTER.md").write_text(render(results))
