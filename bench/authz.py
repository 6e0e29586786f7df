"""``python -m bench.authz``: what pushy's default authorization costs (issue 10).

Two scenarios, each run twice on one gateway process, with
``AUTHORIZE = "pushy.authorization.allow_all"`` and with the default (the
item views of bench/urls.py run as each user):

- **burst**: 1,000 subscribers of the collection ``/api/item/``, signed in as
  100 distinct users (10 connections each), and a transaction saving 200 items.
  The first burst meets empty caches (one view run per item per user: 20,000);
  the next ones, within ``AUTHORIZATION_TTL``, meet warm ones. Deliveries/s as
  ``python -m bench`` measures them (median of the warm bursts).
- **reconnect**: 10,000 clients with session cookies (of the same 100 users)
  connect and subscribe, as after a gateway restart (fresh gateway, empty
  caches) and again to the same gateway (warm caches); seconds until every one
  is subscribed.

Writes bench/authz_results.json; bench/PROFILE.md discusses the figures.

    python -m bench.authz             # the full run, a few minutes
    python -m bench.authz --smoke     # tiny, seconds (the test suite runs it)
    python -m bench.authz --only reconnect   # the 10,000 reconnects alone
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import sys
import tempfile
import urllib.request
from pathlib import Path

from bench import servers
from bench.__main__ import context
from bench.loadgen import Clients
from bench.procs import raise_open_files
from bench.run import Plan, burst, median_burst
from tests.support.servers import RedisServer

ROOT = Path(__file__).resolve().parent.parent
logger = logging.getLogger("bench")

RULES = {"allow_all": "pushy.authorization.allow_all", "default": ""}
HEADERS = {"Origin": "http://localhost"}


@dataclasses.dataclass
class Scenario:
    subscribers: int = 1000
    users: int = 100
    burst: int = 200
    warm_bursts: int = 3
    reconnects: int = 10000
    per_process: int = 2500
    ttl: float = 60  # AUTHORIZATION_TTL

    @classmethod
    def smoke(cls) -> Scenario:
        return cls(
            subscribers=20, users=4, burst=10, warm_bursts=1, reconnects=40
        )  # fmt: skip


def gateway_stats(server: servers.Running) -> dict:
    url = f"http://127.0.0.1:{server.port}/stats"
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def measure_burst(ctx, cookies: list[str], scenario: Scenario) -> dict:
    plan = Plan(burst=scenario.burst, idle=5.0)
    server = servers.start("pushy", ctx)
    try:
        clients = Clients(
            ctx, server.ws_url, scenario.subscribers, HEADERS,
            scenario.per_process, cookies,
        )  # fmt: skip
        try:
            ready = clients.wait_ready()
            cold = burst(server, clients, ctx, plan)
            warm = [
                burst(server, clients, ctx, plan) for _ in range(scenario.warm_bursts)
            ]
        finally:
            clients.quit()
        server.check_alive()
        return {
            "connect": ready,
            "cold": cold,
            "warm": median_burst(warm),
            "stats": gateway_stats(server),
        }
    finally:
        server.stop()


def measure_reconnect(ctx, cookies: list[str], scenario: Scenario) -> dict:
    server = servers.start("pushy", ctx)
    try:
        rounds = []
        for caches in ("cold", "warm"):
            clients = Clients(
                ctx, server.ws_url, scenario.reconnects, HEADERS,
                scenario.per_process, cookies,
            )  # fmt: skip
            try:
                rounds.append({"caches": caches, **clients.wait_ready()})
            finally:
                clients.quit()
        server.check_alive()
        return {
            "n": scenario.reconnects,
            "rounds": rounds,
            "stats": gateway_stats(server),
        }
    finally:
        server.stop()


def benchmark(
    scenario: Scenario,
    redis_url: str | None,
    workdir: str,
    parts: tuple[str, ...] = ("burst", "reconnect"),
) -> dict:
    raise_open_files(scenario.reconnects * 2 + 1024)
    redis_server = None if redis_url else RedisServer().start()
    try:
        url = redis_url or redis_server.url
        ctx = context(workdir, url, redis_server.pid if redis_server else None)
        prepared = ctx.run_json(
            "bench.prepare", str(scenario.burst), str(scenario.users), timeout=300
        )
        cookies = [f"sessionid={key}" for key in prepared["session_keys"]]
        results: dict = {"scenario": dataclasses.asdict(scenario), "rules": {}}
        for name, rule in RULES.items():
            rule_ctx = dataclasses.replace(
                ctx,
                env={
                    **ctx.env,
                    "BENCH_AUTHORIZE": rule,
                    "BENCH_AUTHORIZATION_TTL": str(scenario.ttl),
                },
            )
            entry = {}
            if "burst" in parts:
                logger.info("%s: burst", name)
                entry["burst"] = measure_burst(rule_ctx, cookies, scenario)
            if "reconnect" in parts:
                logger.info("%s: reconnect", name)
                entry["reconnect"] = measure_reconnect(rule_ctx, cookies, scenario)
            results["rules"][name] = entry
        results["summary"] = summary(results)
        return results
    finally:
        if redis_server:
            redis_server.stop()


def summary(results: dict) -> dict:
    rules = results["rules"]
    reconnects = {
        name: [round(r["seconds"], 2) for r in entry["reconnect"]["rounds"]]
        for name, entry in rules.items()
        if "reconnect" in entry
    }
    if "burst" not in rules["allow_all"]:
        return {"reconnect_seconds": reconnects}
    open_rate = rules["allow_all"]["burst"]["warm"]["per_second"]
    default = rules["default"]
    rate = default["burst"]["warm"]["per_second"]
    return {
        "burst_per_second": {
            name: r["burst"]["warm"]["per_second"] for name, r in rules.items()
        },
        "burst_ratio_default_to_allow_all": round(rate / open_rate, 3)
        if open_rate
        else None,
        "cold_burst_seconds": default["burst"]["cold"]["seconds"],
        "reconnect_seconds": reconnects,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.authz", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny, for tests")
    parser.add_argument("--redis-url", help="use this Redis instead of a private one")
    parser.add_argument("--out", default=str(ROOT / "bench"), help="where results go")
    parser.add_argument("--ttl", type=float, default=60, help="AUTHORIZATION_TTL")
    parser.add_argument(
        "--only",
        choices=("burst", "reconnect"),
        help="run one scenario (its results go to authz_<scenario>_ttl*.json)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    scenario = Scenario.smoke() if args.smoke else Scenario()
    scenario.ttl = args.ttl
    workdir = tempfile.mkdtemp(prefix="pushy-bench-authz-")
    try:
        parts = (args.only,) if args.only else ("burst", "reconnect")
        results = benchmark(scenario, args.redis_url, workdir, parts)
    except BaseException:
        logger.error("benchmark failed; server and client logs are in %s", workdir)
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    name = f"authz_{args.only}" if args.only else "authz_results"
    out = Path(args.out) / f"{name}_ttl{args.ttl:g}.json"
    if not args.smoke:
        out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results["summary"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
