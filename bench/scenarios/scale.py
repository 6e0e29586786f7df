"""``python -m bench.scale``: many idle subscribed connections on one box, one update.

Issue 12 item 5: 50,000 idle subscribed connections on one gateway process and
100,000 with ``--workers 2``, each receiving an update. For each scenario (N
connections on W gateway processes) it starts ``runpushy`` with an explicit
``MAX_CONNECTIONS`` per process, opens the N connections (subscribed to one
collection URL, as the hold test does) from as many load-client processes and
loopback source addresses as needed, publishes one update through a real
``save()``, and measures the connect, the memory (the gateway's and the
kernel's), the fan-out and the CPU spent.

The issue's scenarios need a hard open-file limit of at least 60,000 per
process. Below that the scenarios are derived from the limit: the most one
process holds (the ``MAX_CONNECTIONS`` the gateway derives), the same per
process on two workers, and 100,000 on as many workers as that takes. The
output and SCALE.md say which ran and why.

    python -m bench.scale            # the scenarios for this machine; SCALE.md
    python -m bench.scale --smoke    # 200 connections, 2 workers, 2 addresses
    python -m bench.scale --report   # rewrite SCALE.md from scale_results.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.harness import kernel, servers
from bench.harness.environment import RESULTS, commit, context, machine, prepare_db
from bench.harness.loadgen import Clients
from bench.harness.measure import RUNS, LoadSampler, Meter, drive, warm_up
from bench.harness.procs import cpu_seconds, load_average, rss_bytes, tree
from bench.harness.servers import Context, Running
from bench.report import scale as scale_report
from pushy.gateway.admission import default_max_connections
from tests.support.servers import RedisServer, stop_process

logger = logging.getLogger("bench.scale")

# The issue's scenarios, (connections, workers), and the hard open-file limit
# they need: 50,000 on one process plus the gateway's reserve (100 + 10%).
ISSUE_SCENARIOS = ((50_000, 1), (100_000, 2))
ISSUE_HARD_LIMIT = 60_000
TOTAL = 100_000
# Connections from one source address to the gateway's one port. The kernel
# caps them at the ephemeral ports (ip_local_port_range, ~28,000), and each
# connect() searches for a free port longer the more are taken: 17,900 from one
# address cost the load client 1.8x to 3x the CPU of 4 to 8 addresses (SCALE.md).
PER_SOURCE = 5_000
# The comparison scenario: this many from one address (under the port cap).
ONE_SOURCE = 20_000
# SO_REUSEPORT spreads connections by a hash, not evenly: on several workers,
# aim each at 95% of its MAX_CONNECTIONS, so none refuses its share.
SPREAD_MARGIN = 0.95
# The item the measured updates save. The warm-up saves item 1, so no gateway
# has a verdict for this one when its first update comes: each asks AUTHORIZE
# and holds the update for every connection meanwhile (cold); the second update
# of it is decided from the cache (warm), as nearly every update is.
ITEM = 2
# More gateway processes than this per core is no longer a sensible scenario.
MAX_WORKERS_PER_CPU = 4


@dataclass
class Scenario:
    n: int  # connections in all
    workers: int
    max_connections: int  # MAX_CONNECTIONS of each gateway process
    why: str
    per_source: int | None = None  # connections per source address; None: Plan's


@dataclass
class Plan:
    scenarios: list[Scenario]
    choice: str  # which scenarios run, and why
    per_process: int = 2500  # connections per load-client process
    per_source: int = PER_SOURCE  # connections per source address
    connect_timeout: float = 240
    idle: float = 5.0  # seconds without a delivery that end the fan-out
    profile_dir: str = ""  # py-spy the gateway during the fan-out, into here

    @classmethod
    def smoke(cls) -> Plan:
        """200 connections on 2 workers from 2 source addresses: seconds."""
        return cls(
            [Scenario(200, 2, 1000, "smoke test")],
            "smoke test: 200 connections, 2 workers, 2 source addresses",
            per_process=50,
            per_source=100,
            connect_timeout=30,
            idle=3.0,
        )


def hard_open_files() -> int | None:
    """The hard open-file limit of processes started from here; None: none."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return None if hard == resource.RLIM_INFINITY else hard


def plan_for(hard: int | None, cpus: int) -> Plan:
    """The issue's scenarios if this machine's limit allows them, else derived."""
    if hard is None or hard >= ISSUE_HARD_LIMIT:
        per = default_max_connections(hard) or ISSUE_HARD_LIMIT
        scenarios = [Scenario(n, w, per, "issue 12 item 5") for n, w in ISSUE_SCENARIOS]
        scenarios.append(one_source(per))
        why = (
            f"the issue's scenarios: the hard open-file limit "
            f"({hard or 'unlimited'}) allows 50,000 connections on one process"
        )
        return Plan(scenarios, why)
    per = default_max_connections(hard)
    share = int(per * SPREAD_MARGIN) // 100 * 100
    workers = math.ceil(TOTAL / share)
    scenarios = [
        Scenario(per, 1, per, "the most one process holds here"),
        Scenario(2 * share, 2, per, "the same per process, --workers 2"),
    ]
    if workers <= MAX_WORKERS_PER_CPU * cpus:
        scenarios.append(
            Scenario(TOTAL, workers, per, f"100,000 in all, {workers} workers")
        )
    scenarios.append(one_source(per))
    why = (
        f"the hard open-file limit is {hard} per process (below the "
        f"{ISSUE_HARD_LIMIT:,} that 50,000 connections on one process need): "
        f"MAX_CONNECTIONS {per} per process, derived from it as the gateway "
        f"does; several workers get {share} each, {SPREAD_MARGIN:.0%} of it, "
        f"as the kernel's SO_REUSEPORT spread is uneven"
    )
    return Plan(scenarios, why)


def one_source(per: int) -> Scenario:
    """One process again, all its connections from one source address."""
    n = min(per, ONE_SOURCE)
    return Scenario(n, 1, per, "all from one source address", per_source=n)


def sources(n: int, plan: Plan, per_source: int | None = None) -> list[str]:
    """Loopback source addresses (about ``per_source`` connections each); the
    load-client processes take them in turn."""
    count = max(1, math.ceil(n / (per_source or plan.per_source)))
    return [f"127.0.0.{2 + i}" for i in range(count)]


def gateway_starter(scenario: Scenario):
    """A servers.start starter: runpushy (with --workers past 1) on scale_settings."""

    def start(ctx: Context, port: int) -> list:
        env = {**ctx.env, "BENCH_MAX_CONNECTIONS": str(scenario.max_connections)}
        ctx = dataclasses.replace(ctx, env=env)
        args = [sys.executable, "-m", "django", "runpushy", "--host", "127.0.0.1"]
        args += ["--port", str(port)]
        if scenario.workers > 1:
            args += ["--workers", str(scenario.workers)]
        name = f"pushy-w{scenario.workers}"
        return [servers.spawn(ctx, args, "bench.site.scale_settings", name=name)]

    return start


def gateway_pids(server: Running, workers: int) -> list[int]:
    """The gateway processes: the workers under a supervisor, or the one process."""
    pid = server.procs[0].pid
    if workers == 1:
        return [pid]
    return [p for p in tree(pid) if p != pid]


def per_process(pids: list[int]) -> dict:
    return {
        "rss": [rss_bytes(p) for p in pids],
        "cpu": [cpu_seconds(p) for p in pids],
    }


def connect(
    server: Running, ctx: Context, scenario: Scenario, headers: dict, plan: Plan
) -> tuple[Clients, dict]:
    """Open the scenario's N connections; the clients and the connect's figures."""
    addresses = sources(scenario.n, plan, scenario.per_source)
    started = time.monotonic()
    meter = Meter(server, ctx)
    clients = Clients(
        ctx,
        server.ws_url,
        scenario.n,
        headers,
        plan.per_process,
        sources=addresses,
        connect_timeout=plan.connect_timeout,
    )
    try:
        ready = clients.wait_ready(plan.connect_timeout + 60)
    except BaseException:
        clients.quit()
        raise
    wall = time.monotonic() - started
    by_source: dict[str, int] = {}
    for i, share in enumerate(clients.shares):
        address = addresses[i % len(addresses)]
        by_source[address] = by_source.get(address, 0) + share
    return clients, {
        **ready,
        "wall_s": round(wall, 2),
        "per_second": round(ready["subscribed"] / wall) if wall else None,
        "client_processes": len(clients.procs),
        "sources": by_source,
        "gateway_cpu_s": meter.done(ready["client_cpu"])["server_cpu_s"],
    }


def fan_out(
    server: Running, clients: Clients, ctx: Context, plan: Plan, pk: int
) -> dict:
    """One save of item ``pk``; how many connections got its update, how soon."""
    run = next(RUNS)
    clients.start_measuring(run, 1, 120, True, plan.idle)
    meter = Meter(server, ctx)
    driven = drive(ctx, "latency", run, "--count", "1", "--pk", str(pk))
    got = clients.collect()
    saved = driven["times"]["0"]
    cost = meter.done(got["client_cpu"])
    ms = lambda t: round((t - saved) * 1000, 1) if t else None  # noqa: E731
    return {
        "connections": got["connections"],
        "delivered": got["delivered"],
        "short_connections": got["short_connections"],
        "closed": got["closed"],
        "close_codes": got["close_codes"],
        "errors": got["errors"],
        "first_delivery_ms": ms(got["first"]),
        "last_delivery_ms": ms(got["last"]),
        "gateway_cpu_s": cost["server_cpu_s"],
        "client_cpu_s": cost["client_cpu_s"],
        "client_max_gap_s": got["max_gap_s"],
        "gateway_cpu_per_delivery_us": round(
            cost["server_cpu_s"] / got["delivered"] * 1e6, 2
        )
        if got["delivered"]
        else None,
    }


def measure(scenario: Scenario, ctx: Context, headers: dict, plan: Plan) -> dict:
    """One scenario on a fresh gateway; every figure of it."""
    row: dict = {"scenario": dataclasses.asdict(scenario)}
    load = LoadSampler(2.0)
    kernel_before = kernel.snapshot()
    server = servers.start(
        "pushy", ctx, 60, gateway_starter(scenario), patterns=scenario.workers
    )
    clients = None
    try:
        pids = gateway_pids(server, scenario.workers)
        # As the hold test: a few connections and one save first, so lazy
        # set-up is done before RSS is taken.
        warm_up(server, ctx, headers)
        idle = per_process(pids)
        clients, row["connect"] = connect(server, ctx, scenario, headers, plan)
        held = per_process(pids)
        row["kernel"] = kernel.delta(kernel_before, kernel.snapshot())
        row["memory"] = memory(idle, held, row["connect"]["subscribed"])
        if plan.profile_dir:
            server.profile(os.path.join(plan.profile_dir, f"scale-{scenario.n}"))
        # First an update no gateway has a verdict for (cold), then the same
        # again, which every gateway now decides from its cache (warm).
        row["fan_out_cold"] = fan_out(server, clients, ctx, plan, ITEM)
        before = per_process(pids)
        row["fan_out"] = fan_out(server, clients, ctx, plan, ITEM)
        after = per_process(pids)
        row["fan_out"]["gateway_cpu_by_process_s"] = [
            round(b - a, 3) for a, b in zip(before["cpu"], after["cpu"], strict=True)
        ]
        server.check_alive()
    finally:
        started = time.monotonic()
        if clients:
            clients.quit()
        for proc in reversed(server.procs):
            stop_process(proc, timeout=30)
        row["teardown_s"] = round(time.monotonic() - started, 1)
        row["load"] = load.done()
    return row


def memory(idle: dict, held: dict, subscribed: int) -> dict:
    """Gateway RSS before and after the connect, in all and per connection."""
    before, after = sum(idle["rss"]), sum(held["rss"])
    return {
        "gateway_rss_idle": before,
        "gateway_rss_held": after,
        "gateway_rss_by_process": held["rss"],
        "bytes_per_connection": round((after - before) / subscribed)
        if subscribed
        else None,
    }


def attempt(scenario: Scenario, ctx: Context, headers: dict, plan: Plan) -> dict:
    """measure(), or the error: one failed scenario must not lose the others."""
    try:
        return measure(scenario, ctx, headers, plan)
    except (RuntimeError, TimeoutError, OSError, KeyError) as e:
        logger.exception("scenario %s failed", scenario)
        return {
            "scenario": dataclasses.asdict(scenario),
            "error": f"{type(e).__name__}: {str(e)[:1000]}",
        }


def benchmark(plan: Plan, workdir: str) -> dict:
    """Every scenario of ``plan`` on a private Redis; the results."""
    load_before = load_average()
    redis_server = RedisServer().start()
    try:
        ctx = context(workdir, redis_server.url, redis_server.pid)
        session_key = prepare_db(ctx, ITEM)
        headers = {"Origin": "http://localhost", "Cookie": f"sessionid={session_key}"}
        started = time.time()
        rows = []
        for scenario in plan.scenarios:
            logger.info("scale: %s", scenario)
            rows.append(attempt(scenario, ctx, headers, plan))
            logger.info("scale: %s", json.dumps(rows[-1])[:2000])
        return {
            "scenarios": rows,
            "meta": {
                "commit": commit(),
                "started": started,
                "seconds": round(time.time() - started, 1),
                "machine": machine(),
                "limits": kernel.limits(),
                "load_before": round(load_before, 2),
                "choice": plan.choice,
                "plan": {k: v for k, v in vars(plan).items() if k != "scenarios"},
            },
        }
    finally:
        redis_server.stop()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="200 connections")
    parser.add_argument("--report", action="store_true", help="only rewrite SCALE.md")
    parser.add_argument("--out", default=str(RESULTS), help="where results go")
    parser.add_argument(
        "--only", help="comma-separated N:W scenarios instead of the default ones"
    )
    parser.add_argument("--profile", action="store_true", help="py-spy the fan-out")
    parser.add_argument(
        "--per-source", type=int, help=f"connections per source address ({PER_SOURCE})"
    )
    return parser.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    if args.smoke:
        return Plan.smoke()
    plan = plan_for(hard_open_files(), os.cpu_count() or 1)
    if args.only:
        per = plan.scenarios[0].max_connections
        plan.scenarios = [
            Scenario(int(n), int(w), per, "chosen with --only")
            for n, w in (item.split(":") for item in args.only.split(","))
        ]
    if args.per_source:
        plan.per_source = args.per_source
    if args.profile:
        plan.profile_dir = str(Path(args.out) / "profiles")
        Path(plan.profile_dir).mkdir(parents=True, exist_ok=True)
    return plan


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out = Path(args.out)
    if args.report:
        results = json.loads((out / "scale_results.json").read_text())
        scale_report.write(results, out)
        return 0
    plan = make_plan(args)
    print(f"bench.scale: {plan.choice}", flush=True)
    workdir = tempfile.mkdtemp(prefix="pushy-scale-")
    results = benchmark(plan, workdir)
    name = "scale_smoke.json" if args.smoke else "scale_results.json"
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_text(json.dumps(results, indent=1) + "\n")
    if not args.smoke:
        scale_report.write(results, out)
    print(json.dumps(scale_report.summary(results), indent=1))
    print(f"results in {out / name}; server and client logs in {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
