"""The measurements the scenarios share: connect, latency, bursts, load, CPU.

``Plan`` holds their parameters (defaults: the comparison's, bench/scenarios/
compare.py). Every figure carries the CPU seconds the server, the load client
and Redis used meanwhile, because they all share the machine's cores.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass, field

from bench.harness.loadgen import Clients
from bench.harness.procs import cpu_seconds, load_average
from bench.harness.servers import Context, Running
from bench.peers.registry import PEERS, RUN_ORDER

logger = logging.getLogger(__name__)


@dataclass
class Plan:
    servers: list[str] = field(default_factory=lambda: list(RUN_ORDER))
    sizes: list[int] = field(default_factory=lambda: [100, 1000, 5000])
    # The largest N a server is measured at (bench/peers/registry.py says why).
    max_size: dict[str, int] = field(
        default_factory=lambda: {p.name: p.max_size for p in PEERS if p.max_size}
    )
    latency_sizes: list[int] = field(default_factory=lambda: [100, 1000])
    latency_rate: float = 20
    # 30 s at 20/s: a p99 of 600 saves is their sixth worst, so one stall of the
    # shared machine no longer decides it (bench/results/PROFILE.md, section 5).
    latency_saves: int = 600
    burst: int = 200
    burst_repeats: int = 3
    # One burst first that is not counted (its loss is): on fresh connections
    # the first meets cold caches (pushy's authorization of items 2 to 200,
    # node.js's JIT) and was the slowest of every quick server's.
    burst_warm_up: bool = True
    # No further repeat after a burst this long (a server that loses and lags
    # would take minutes for three).
    burst_repeat_within: float = 30.0
    hold: int = 10000  # 0 skips the hold test
    hold_servers: list[str] = field(
        default_factory=lambda: [p.name for p in PEERS if p.max_size is None]
    )
    per_process: int = 2500  # connections per load-client process
    idle: float = 5.0  # seconds without a delivery that end a measurement
    warm_up: bool = True  # one save through a fresh server before RSS is taken
    profile: list[str] = field(default_factory=list)  # servers to sample with py-spy
    profile_dir: str = ""
    load_every: float = 2.0  # seconds between samples of the load average
    # Seconds a server may stay busy after the saves before the bursts get a
    # fresh one (a server that fell behind would start them behind its backlog).
    settle: float = 5.0

    def sizes_for(self, name: str) -> list[int]:
        limit = self.max_size.get(name)
        return [n for n in self.sizes if limit is None or n <= limit]

    @classmethod
    def smoke(cls) -> Plan:
        """Seconds, not minutes: proves every part still works end to end."""
        return cls(
            sizes=[20],
            latency_sizes=[20],
            latency_rate=50,
            latency_saves=5,
            burst=20,
            burst_repeats=1,
            hold=30,
            hold_servers=["floor"],  # the hold code path, at the least cost
            idle=5.0,
            warm_up=False,
        )


class Meter:
    """CPU seconds used by the server, Redis and wall time over one measurement."""

    def __init__(self, server: Running, ctx: Context) -> None:
        self.server, self.ctx = server, ctx
        self.wall = time.monotonic()
        self.server_cpu = server.cpu()
        self.redis_cpu = self._redis()

    def _redis(self) -> float:
        return cpu_seconds(self.ctx.redis_pid) if self.ctx.redis_pid else 0.0

    def done(self, client_cpu: float) -> dict:
        return {
            "wall_s": round(time.monotonic() - self.wall, 3),
            "server_cpu_s": round(self.server.cpu() - self.server_cpu, 3),
            "client_cpu_s": round(client_cpu, 3),
            "redis_cpu_s": round(self._redis() - self.redis_cpu, 3),
        }


RUNS = itertools.count(1)  # numbers the save runs; their titles carry it


def drive(ctx: Context, mode: str, run: int, *args: str) -> dict:
    """Run the saving process (bench.harness.driver) to its end; its JSON result."""
    return ctx.run_json(
        "bench.harness.driver", mode, "--run", str(run), *args, timeout=300
    )


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, round(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summarise(values: list[float]) -> dict:
    ms = [v * 1000 for v in values]
    return {
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms) if ms else None,
    }


def latency(
    server: Running, clients: Clients, ctx: Context, plan: Plan, *extra: str
) -> dict:
    """Saves at a fixed rate; time from before save() to the first, last subscriber.

    ``extra``: more arguments for the driver (``--vary-level``)."""
    saves = plan.latency_saves
    duration = saves / plan.latency_rate
    run = next(RUNS)
    # A server that falls behind gets 20 s past the last save, then counts as lost.
    clients.start_measuring(run, saves, duration + 20, True, plan.idle)
    meter = Meter(server, ctx)
    rate = str(plan.latency_rate)
    driven = drive(ctx, "latency", run, "--rate", rate, "--count", str(saves), *extra)
    got = clients.collect()
    cost = meter.done(got["client_cpu"])
    times = {int(seq): t for seq, t in driven["times"].items()}
    complete = {
        seq: entry
        for seq, entry in got["by_seq"].items()
        if entry[2] >= got["connections"] and seq in times
    }
    return {
        "saves": saves,
        "rate": plan.latency_rate,
        "driver_behind_s": round(driven["behind"], 3),
        "delivered": got["delivered"],
        "expected": got["expected"],
        # Late: arrived after the measurement gave up, while the client drained.
        "lost": max(0, got["expected"] - got["delivered"] - got["late"]),
        "extra": got["extra"],
        "updates_reaching_all": len(complete),
        "first": summarise([e[0] - times[s] for s, e in complete.items()]),
        "last": summarise([e[1] - times[s] for s, e in complete.items()]),
        "late": got["late"],
        "stale": got["stale"],
        "closed": got["closed"],
        "close_codes": got["close_codes"],
        **cost,
        "server_cpu_per_delivery_us": per_delivery(cost, got["delivered"]),
    }


def per_delivery(cost: dict, delivered: int) -> float | None:
    """Server CPU µs per delivery over one measurement; None for none delivered."""
    return round(cost["server_cpu_s"] / delivered * 1e6, 2) if delivered else None


def burst(server: Running, clients: Clients, ctx: Context, plan: Plan) -> dict:
    """One transaction saves ``plan.burst`` items; deliveries/s and the exact loss."""
    run = next(RUNS)
    clients.start_measuring(run, plan.burst, 120, False, plan.idle)
    meter = Meter(server, ctx)
    driven = drive(ctx, "burst", run, "--count", str(plan.burst))
    got = clients.collect()
    cost = meter.done(got["client_cpu"])
    span = (got["last"] - driven["committed"]) if got["last"] else None
    delivered = got["delivered"]
    return {
        "updates": plan.burst,
        "delivered": delivered,
        "expected": got["expected"],
        "lost": max(0, got["expected"] - delivered - got["late"]),
        "extra": got["extra"],
        "seconds": round(span, 4) if span else None,
        "per_second": round(delivered / span) if span else 0,
        "server_cpu_per_delivery_us": per_delivery(cost, delivered),
        "late": got["late"],
        "stale": got["stale"],
        "closed": got["closed"],
        "close_codes": got["close_codes"],
        **cost,
    }


def bursts(server: Running, clients: Clients, ctx: Context, plan: Plan) -> list[dict]:
    """Up to ``burst_repeats`` counted bursts, behind a warm-up one (marked
    ``warm_up``) unless a burst is slow: then the first is the one counted."""
    runs = [burst(server, clients, ctx, plan)]
    if plan.burst_warm_up and runs[0]["wall_s"] < plan.burst_repeat_within:
        runs[0]["warm_up"] = True
    while (
        sum(not r.get("warm_up") for r in runs) < plan.burst_repeats
        and runs[-1]["wall_s"] < plan.burst_repeat_within
    ):
        runs.append(burst(server, clients, ctx, plan))
    return runs


def median_burst(runs: list[dict]) -> dict:
    """The counted run with the median deliveries/s, every counted run's rate
    beside it; the warm-up's rate is kept apart, its loss counts with the rest."""
    counted = [r for r in runs if not r.get("warm_up")]
    ordered = sorted(counted, key=lambda r: r["per_second"])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["runs_per_second"] = [r["per_second"] for r in counted]
    chosen["warm_up_per_second"] = next(
        (r["per_second"] for r in runs if r.get("warm_up")), None
    )
    chosen["lost_total"] = sum(r["lost"] for r in runs)
    chosen["bursts"] = len(runs)
    return chosen


def warm_up(server: Running, ctx: Context, headers: dict) -> None:
    """A few connections and one save, so lazy set-up is done before RSS is taken."""
    clients = Clients(ctx, server.ws_url, 5, headers, per_process=5)
    try:
        ready = clients.wait_ready(60)
        if ready["subscribed"] != 5:
            raise RuntimeError(f"{server.name}: warm-up could not subscribe: {ready}")
        run = next(RUNS)
        clients.start_measuring(run, 1, 30, False, plan_idle=5)
        drive(ctx, "latency", run, "--count", "1")
        got = clients.collect()
        if got["delivered"] != 5:
            raise RuntimeError(f"{server.name}: warm-up update not delivered: {got}")
    finally:
        clients.quit()


def connect(server: Running, ctx: Context, n: int, headers: dict, plan: Plan) -> tuple:
    """Start the load client's N connections; (clients, figures of the connect)."""
    before = server.rss()
    meter = Meter(server, ctx)
    clients = Clients(ctx, server.ws_url, n, headers, plan.per_process)
    ready = clients.wait_ready()
    after = server.rss()
    figures = {
        **ready,
        "rss_before": before,
        "rss_after": after,
        "bytes_per_connection": round((after - before) / n) if n else None,
        **meter.done(ready["client_cpu"]),
    }
    if ready["subscribed"] != n:
        logger.warning(
            "%s: only %d of %d subscribed", server.name, ready["subscribed"], n
        )
    return clients, figures


def settled(server: Running, within: float) -> bool:
    """Whether the server goes idle (under 5% of a core for 1 s) within ``within`` s."""
    deadline = time.monotonic() + within
    last = server.cpu()
    while time.monotonic() < deadline:
        time.sleep(1.0)  # CPU counters move by ticks: there is no event to await
        now = server.cpu()
        if now - last < 0.05:
            return True
        last = now
    return False


class LoadSampler:
    """The 1-minute load average, sampled in a thread while a server is measured.

    It counts this run's own processes too (server, load client, Redis, the
    saving process): on 2 cores a busy measurement alone reaches 1 to 2. What
    it tells is whether anything else ran meanwhile.
    """

    def __init__(self, every: float) -> None:
        self.every = every
        self.before = load_average()
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(self.every):
            self.samples.append(load_average())

    def done(self) -> dict:
        self._stop.set()
        self._thread.join()
        samples = self.samples or [load_average()]
        return {
            "before": round(self.before, 2),
            "mean": round(sum(samples) / len(samples), 2),
            "max": round(max(samples), 2),
            "samples": len(samples),
        }
