"""``python -m bench``: run the benchmark and write bench/RESULTS.md and the plot.

python -m bench                 # the full run (see bench/README.md for its time)
python -m bench --smoke         # tiny N, seconds: what the test suite runs
python -m bench --servers floor,pushy --sizes 100,1000 --hold 0
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import node_peer, report, servers
from bench.procs import raise_open_files
from bench.run import Plan, run
from tests.support.servers import RedisServer

ROOT = Path(__file__).resolve().parent.parent
logger = logging.getLogger("bench")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny N, for tests")
    parser.add_argument(
        "--servers", help="comma-separated, of: " + ",".join(servers.STARTERS)
    )
    parser.add_argument("--sizes", help="comma-separated N for memory and bursts")
    parser.add_argument("--latency-sizes", help="comma-separated N for latency")
    parser.add_argument(
        "--hold", type=int, help="connections of the hold test, 0: none"
    )
    parser.add_argument("--redis-url", help="use this Redis instead of a private one")
    parser.add_argument("--out", default=str(ROOT / "bench"), help="where results go")
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
        unknown = set(plan.servers) - set(servers.STARTERS)
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
    skip = {}
    if not servers.channels_installed():
        why = "channels, channels_redis or daphne is not installed"
        skip.update({"channels": why, "channels-tuned": why})
    if not servers.pushy_gateway_installed():
        skip["pushy"] = "pushy's gateway (runpushy) is not available"
    if "node-ws" in names:
        why = node_peer.problem()
        if why:
            skip["node-ws"] = why
    return {name: why for name, why in skip.items() if name in names}


def machine() -> dict:
    """What the figures were measured on."""
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        kib = int(f.readline().split()[1])
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": round(kib / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "node": node_peer.version(),
    }


def prepare_db(ctx: servers.Context, items: int) -> str:
    """Create the database; the session key the load client signs in with."""
    return ctx.run_json("bench.prepare", str(items), timeout=120)["session_key"]


def commit() -> str:
    """The commit measured (``-dirty`` when the work tree had changes)."""
    done = subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip() or "unknown"


def context(workdir: str, redis_url: str, redis_pid: int | None) -> servers.Context:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
        BENCH_DB=os.path.join(workdir, "bench.sqlite3"),
        BENCH_REDIS_URL=redis_url,
        PYTHONUNBUFFERED="1",
    )
    return servers.Context(str(ROOT), workdir, env, redis_url, redis_pid)


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
