"""The figures the report compares, each against the best peer of its row.

A row is one figure (or a p50 / p99 pair) measured on every server. Its best
peer is the peer (any server but pushy) with the best value among those that
did the whole job in that measurement: a peer that lost updates or failed to
connect some clients did less work and is never taken as the best. Every
server's ratio is its value divided by the best peer's, so the best peer reads
1.00×; above 1 is better for deliveries/s, below 1 for every other row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.peers import registry

COLUMNS = tuple(p.name for p in registry.PEERS)  # the peers, then pushy
PEERS = tuple(name for name in COLUMNS if name != registry.SUBJECT)
NAMES = {p.name: p.label for p in registry.PEERS}

Values = tuple[float | None, ...]


def rows_of(results: dict, name: str) -> dict[int, dict]:
    sizes = results["servers"].get(name, {}).get("sizes", {})
    return {int(n): row for n, row in sizes.items() if "error" not in row}


def sizes_with(results: dict, part: str) -> list[int]:
    found = {
        n
        for name in COLUMNS
        for n, row in rows_of(results, name).items()
        if part in row
    }
    return sorted(found)


def held(entry: dict) -> dict | None:
    figure = entry.get("hold")
    return None if not figure or "error" in figure else figure


def lost_text(f: dict) -> str:
    text = "none lost"
    if f["lost"]:
        text = f"{f['lost']:,} lost ({f['lost'] / f['expected']:.1%})"
    if f.get("late"):
        text += f", {f['late']:,} late"
    return text


def ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def us(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f}"


@dataclass
class Metric:
    """One row: how to find its figure in a server's entry, show it, compare it."""

    label: str
    pick: Callable[[dict], dict | None]
    show: Callable[[dict], str]
    values: Callable[[dict], Values]
    whole: Callable[[dict], bool]  # did the server do the whole job?
    higher_is_better: bool = False
    short: str = ""  # a shorter label, for the README's table
    unit: Callable[[float], str] = str  # one value, with its unit

    def best_text(self, results: dict) -> str:
        """The best peers' values and names: ``15 / 23 ms (node.js ws)``."""
        best = self.best(results)
        if not any(best):
            return "–"
        names = {b[0] for b in best if b}
        if len(names) == 1 and all(best):
            values = " / ".join(self.unit(b[1]) for b in best if b)
            return f"{values} ({NAMES[names.pop()]})"
        return " / ".join(
            f"{self.unit(b[1])} ({NAMES[b[0]]})" if b else "–" for b in best
        )

    def figure(self, results: dict, name: str) -> dict | None:
        entry = results["servers"].get(name, {})
        return None if "skipped" in entry else self.pick(entry)

    def best(self, results: dict) -> list[tuple[str, float] | None]:
        """For each value of the row, the best whole peer and its value."""
        found: list[tuple[str, float] | None] = []
        width = self._width(results)
        for i in range(width):
            candidates = []
            for name in PEERS:
                figure = self.figure(results, name)
                if figure is None or not self.whole(figure):
                    continue
                value = self.values(figure)[i]
                if value:
                    candidates.append((value, name))
            if not candidates:
                found.append(None)
                continue
            pick = max if self.higher_is_better else min
            value, name = pick(candidates)
            found.append((name, value))
        return found

    def _width(self, results: dict) -> int:
        for name in COLUMNS:
            figure = self.figure(results, name)
            if figure is not None:
                return len(self.values(figure))
        return 0

    def ratios(self, results: dict, name: str) -> list[float | None]:
        """``name``'s values divided by the best peer's, one per value."""
        figure = self.figure(results, name)
        if figure is None:
            return []
        out = []
        for value, best in zip(self.values(figure), self.best(results), strict=False):
            out.append(value / best[1] if value is not None and best else None)
        return out


def ratio_text(ratios: list[float | None]) -> str:
    def one(r: float | None) -> str:
        if r is None:
            return "–"
        if r >= 100:
            return f"{r:,.0f}×"
        return f"{r:.2f}×" if r >= 0.1 else f"{r:.2g}×"

    return " / ".join(one(r) for r in ratios)


def _size(n: int, part: str) -> Callable[[dict], dict | None]:
    return lambda entry: entry.get("sizes", {}).get(str(n), {}).get(part)


def _whole(f: dict) -> bool:
    return not f.get("lost") and f.get("delivered") == f.get("expected")


def latency_row(n: int, which: str, rate: float) -> Metric:
    def show(f: dict) -> str:
        text = f"{ms(f[which]['p50_ms'])} / {ms(f[which]['p99_ms'])} ms"
        if f["lost"] or f.get("late"):
            text += ", " + lost_text(f)
        return text

    return Metric(
        f"{n:,} subscribers, {rate:g} saves/s: {which} delivery p50 / p99",
        _size(n, "latency"),
        show,
        lambda f: (f[which]["p50_ms"], f[which]["p99_ms"]),
        _whole,
        short=f"{which} delivery at {rate:g} updates/s, p50 / p99",
        unit=lambda v: f"{ms(v)} ms",
    )


def cpu_row(n: int, part: str, label: str, short: str) -> Metric:
    return Metric(
        f"{n:,} subscribers, {label}: server CPU per delivery",
        _size(n, part),
        lambda f: f"{us(f.get('server_cpu_per_delivery_us'))} µs",
        lambda f: (f.get("server_cpu_per_delivery_us"),),
        _whole,
        short=f"server CPU per delivery, {short}",
        unit=lambda v: f"{us(v)} µs",
    )


def memory_row(n: int) -> Metric:
    def show(f: dict) -> str:
        text = f"{f['bytes_per_connection'] / 1024:.1f} KiB"
        return text + (f" ({f['failed']:,} failed to connect)" if f["failed"] else "")

    return Metric(
        f"memory per idle connection ({n:,} open)",
        _size(n, "connect"),
        show,
        lambda f: (f["bytes_per_connection"],),
        lambda f: not f["failed"],
        short="memory per idle connection",
        unit=lambda v: f"{v / 1024:.1f} KiB",
    )


def burst_row(n: int, burst: int) -> Metric:
    return Metric(
        f"{n:,} subscribers, burst of {burst} updates: deliveries/s, lost",
        _size(n, "burst"),
        lambda f: f"{f['per_second']:,}/s, {lost_text(f)}",
        lambda f: (f["per_second"],),
        lambda f: _whole(f) and not f.get("lost_total"),
        higher_is_better=True,
        short=f"deliveries/s in a burst of {burst} updates",
        unit=lambda v: f"{v:,.0f}/s",
    )


def hold_row(n: int) -> Metric:
    return Metric(
        f"hold {n:,} connections on one process: last delivery of one update",
        held,
        lambda f: (
            f"{f['connect']['subscribed']:,} subscribed in "
            f"{f['connect']['seconds']:.1f} s, {f['delivered']:,} delivered, "
            f"last after {ms(f['last_delivery_ms'])} ms, "
            f"{f['connect']['bytes_per_connection'] / 1024:.1f} KiB each"
        ),
        lambda f: (f["last_delivery_ms"],),
        lambda f: f["delivered"] == f["expected"] == f["connect"]["subscribed"],
        short="one update to every connection of one process, last delivery",
        unit=lambda v: f"{ms(v)} ms",
    )


def metrics(results: dict) -> list[Metric]:
    """Every row of the summary, in order."""
    plan = results["meta"]["plan"]
    rate = plan["latency_rate"]
    rows = []
    for n in sizes_with(results, "latency"):
        rows.append(latency_row(n, "last", rate))
        rows.append(latency_row(n, "first", rate))
        rows.append(cpu_row(n, "latency", f"{rate:g} saves/s", f"{rate:g} updates/s"))
    for n in sizes_with(results, "burst"):
        rows.append(burst_row(n, plan["burst"]))
        rows.append(cpu_row(n, "burst", "burst", "burst"))
    for n in sizes_with(results, "connect"):
        rows.append(memory_row(n))
    if plan["hold"]:
        rows.append(hold_row(plan["hold"]))
    return rows


def figure(results: dict, name: str, n: int, part: str) -> dict | None:
    return rows_of(results, name).get(n, {}).get(part)
