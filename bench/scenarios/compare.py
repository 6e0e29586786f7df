"""``python -m bench``: pushy against its peers; bench/results/RESULTS.md and the plot.

python -m bench                 # the full run (see bench/README.md for its time)
python -m bench --smoke         # tiny N, seconds: what the test suite runs
python -m bench --servers floor,pushy --sizes 100,1000 --hold 0

For each server and each N, memory, latency, burst and the hold test. Each
(server, N) gets a fresh server process, so memory figures start clean; all
servers use the same private Redis and the same database, one after the other.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.harness import servers
from bench.harness.environment import RESULTS, commit, context, machine, prepare_db
from bench.harness.loadgen import Clients
from bench.harness.measure import (
    RUNS,
    LoadSampler,
    Meter,
    Plan,
    bursts,
    connect,
    drive,
    latency,
    median_burst,
    settled,
    warm_up,
)
from bench.harness.procs import raise_open_files
from bench.harness.servers import Context, Running
from bench.peers.registry import NAMES, peer
from bench.report import compare as report
from tests.support.servers import RedisServer

logger = logging.getLogger("bench")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny N, for tests")
    parser.add_argument("--servers", help="comma-separated, of: " + ",".join(NAMES))
    parser.add_argument("--sizes", help="comma-separated N for memory and bursts")
    parser.add_argument("--latency-sizes", help="comma-separated N for latency")
    parser.add_argument(
        "--hold", type=int, help="connections of the hold test, 0: none"
    )
    parser.add_argument("--redis-url", help="use this Redis instead of a private one")
    parser.add_argument("--out", default=str(RESULTS), help="where results go")
    parser.add_argument("--note", default="", help="a line for RESULTS.md")
    parser.add_argument(
        "--profile",
        default="",
        help="comma-separated servers to sample with py-spy during latency and "
        "bursts (collapsed stacks in --out/profiles/)",
    )
    return parser.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    plan = Plan.smoke() if args.smoke else Plan()
    ints = lambda text: [int(x) for x in text.split(",") if x]  # noqa: E731
    if args.servers:
        plan.servers = args.servers.split(",")
        unknown = set(plan.servers) - set(NAMES)
        if unknown:
            raise SystemExit(f"unknown servers: {', '.join(sorted(unknown))}")
    if args.sizes:
        plan.sizes = ints(args.sizes)
    if args.latency_sizes is not None:
        plan.latency_sizes = ints(args.latency_sizes)
    if args.hold is not None:
        plan.hold = args.hold
    if args.profile:
        plan.profile = args.profile.split(",")
        plan.profile_dir = str(Path(args.out) / "profiles")
        Path(plan.profile_dir).mkdir(parents=True, exist_ok=True)
    return plan


def unavailable(names: list[str]) -> dict[str, str]:
    """Those of ``names`` that cannot run here, and why (installs the node peer)."""
    why = {name: peer(name).problem() for name in names}
    return {name: reason for name, reason in why.items() if reason}


def open_server(
    name: str, n: int, ctx: Context, headers: dict, plan: Plan
) -> tuple[Running, Clients, dict]:
    """A fresh server with N subscribed connections; the figures of the connect."""
    server = servers.start(name, ctx)
    try:
        if plan.warm_up:
            warm_up(server, ctx, headers)
        clients, figures = connect(server, ctx, n, headers, plan)
    except BaseException:
        server.stop()
        raise
    if name in plan.profile:
        server.profile(os.path.join(plan.profile_dir, f"{name}-{n}"))
    return server, clients, figures


def measure_size(name: str, n: int, ctx: Context, headers: dict, plan: Plan) -> dict:
    server, clients, figures = open_server(name, n, ctx, headers, plan)
    row: dict = {"n": n, "connect": figures}
    try:
        if n in plan.latency_sizes:
            row["latency"] = latency(server, clients, ctx, plan)
            if plan.burst and not settled(server, plan.settle):
                # Still working off the saves it could not keep up with: the
                # bursts would queue behind them. A fresh server starts them clean.
                logger.info(
                    "%s: busy %.0f s after the saves: restarting", name, plan.settle
                )
                server.check_alive()
                clients.quit()
                server.stop()
                server, clients, row["reconnect"] = open_server(
                    name, n, ctx, headers, plan
                )
        if plan.burst:
            row["burst"] = median_burst(bursts(server, clients, ctx, plan))
        server.check_alive()
        return row
    finally:
        clients.quit()
        server.stop()


def hold(name: str, ctx: Context, headers: dict, plan: Plan) -> dict:
    """``plan.hold`` connections on one server process; one update reaches them all."""
    server = servers.start(name, ctx)
    try:
        if plan.warm_up:
            warm_up(server, ctx, headers)
        clients, figures = connect(server, ctx, plan.hold, headers, plan)
        try:
            run = next(RUNS)
            clients.start_measuring(run, 1, 120, True, plan.idle)
            meter = Meter(server, ctx)
            driven = drive(ctx, "latency", run, "--count", "1")
            got = clients.collect()
            saved = driven["times"]["0"]
            return {
                "n": plan.hold,
                "connect": figures,
                "delivered": got["delivered"],
                "expected": plan.hold,
                "last_delivery_ms": round((got["last"] - saved) * 1000, 1)
                if got["last"]
                else None,
                **meter.done(got["client_cpu"]),
            }
        finally:
            clients.quit()
    finally:
        server.stop()


def attempt(measure: Callable[..., dict], *args: object) -> dict:
    """``measure(*args)``, or ``{"error": ...}``: one failure must not lose a run."""
    try:
        return measure(*args)
    except (RuntimeError, TimeoutError, OSError, KeyError) as e:
        logger.exception("%s%r failed", measure.__name__, args[:2])
        return {"error": f"{type(e).__name__}: {str(e)[:500]}"}


def run(plan: Plan, ctx: Context, headers: dict, skip: dict[str, str]) -> dict:
    """Every measurement of ``plan``; servers named in ``skip`` get only the reason."""
    results: dict = {"servers": {}}
    for name in plan.servers:
        if name in skip:
            results["servers"][name] = {"skipped": skip[name]}
            logger.warning("skipping %s: %s", name, skip[name])
            continue
        entry: dict = {"sizes": {}}
        load = LoadSampler(plan.load_every)
        started = time.monotonic()
        for n in plan.sizes_for(name):
            logger.info("%s: N=%d", name, n)
            entry["sizes"][str(n)] = attempt(measure_size, name, n, ctx, headers, plan)
        if plan.hold and name in plan.hold_servers:
            logger.info("%s: hold %d", name, plan.hold)
            entry["hold"] = attempt(hold, name, ctx, headers, plan)
        entry["load"] = load.done()
        entry["seconds"] = round(time.monotonic() - started, 1)
        logger.info(
            "%s: done in %.0f s, load %s", name, entry["seconds"], entry["load"]
        )
        results["servers"][name] = entry
    return results


def benchmark(plan: Plan, redis_url: str | None, workdir: str) -> dict:
    """Run ``plan`` on a private Redis (or ``redis_url``); the results."""
    load_before = os.getloadavg()  # before this run adds its own load
    # Servers and clients inherit this: 10,000 sockets need more than 1,024 fds.
    raise_open_files(max(plan.hold, max(plan.sizes, default=0)) * 2 + 1024)
    redis_server = None if redis_url else RedisServer().start()
    try:
        url = redis_url or redis_server.url
        ctx = context(workdir, url, redis_server.pid if redis_server else None)
        session_key = prepare_db(ctx, max(plan.burst, 1))
        headers = {"Origin": "http://localhost", "Cookie": f"sessionid={session_key}"}
        started = time.time()
        results = run(plan, ctx, headers, unavailable(plan.servers))
        results["meta"] = {
            "commit": commit(),
            "started": started,
            "seconds": round(time.time() - started, 1),
            "cpus": os.cpu_count(),
            "machine": machine(),
            "load_before": load_before,
            "plan": plan.__dict__,
        }
        return results
    finally:
        if redis_server:
            redis_server.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    plan = make_plan(args)
    workdir = tempfile.mkdtemp(prefix="pushy-bench-")
    try:
        results = benchmark(plan, args.redis_url, workdir)
    except BaseException:
        logger.error("benchmark failed; server and client logs are in %s", workdir)
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    results["meta"]["note"] = args.note
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    if not args.smoke:
        report.write(results, out)
    print(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
