"""``python -m bench.authz``: what pushy's default authorization costs (issue 10).

Three scenarios, on one gateway process each, with
``AUTHORIZE = "pushy.authorization.allow_all"``, with the default (the
item views of bench/site/urls.py run as each user; the item model in
VISIBILITY_FIELDS with the fields its view reads), and with the default and
the model left out of VISIBILITY_FIELDS (``default_undeclared``: every update
may change who sees it, so every subscriber's user is asked again; burst and
visibility only):

- **burst**: 1,000 subscribers of the collection ``/api/item/``, signed in as
  100 distinct users (10 connections each), and a transaction saving 200 items.
  The first burst meets empty caches (one view run per item per user: 20,000);
  the next ones, within ``AUTHORIZATION_TTL``, meet warm ones. Deliveries/s as
  ``python -m bench`` measures them (median of the warm bursts).
- **reconnect**: 10,000 clients with session cookies (of the same 100 users)
  connect and subscribe, as after a gateway restart (fresh gateway, empty
  caches) and again to the same gateway (warm caches); seconds until every one
  is subscribed.
- **visibility** (default rules only): the burst's 1,000 collection
  subscribers, caches warmed by one burst, then 20 saves/s of one item for
  30 s, first changing only its title (the visibility token stays), then also
  a field of VISIBILITY_FIELDS each time (its level, 0 <-> 1: nobody loses the
  item, but every gateway must ask again). View runs/s and the latency to the
  first and last subscriber (p50/p99) say what re-asking costs.

Writes bench/results/authz_results_ttl<TTL>.json; bench/results/PROFILE.md
discusses the figures.

    python -m bench.authz             # the full run, a few minutes
    python -m bench.authz --smoke     # tiny, seconds (the test suite runs it)
    python -m bench.authz --only reconnect   # the 10,000 reconnects alone
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import shutil
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from bench.harness import servers
from bench.harness.environment import RESULTS, context
from bench.harness.loadgen import Clients
from bench.harness.measure import Plan, burst, latency, median_burst
from bench.harness.procs import raise_open_files
from tests.support.servers import RedisServer

logger = logging.getLogger("bench")

# name -> (AUTHORIZE, the item left out of VISIBILITY_FIELDS)
RULES = {
    "allow_all": ("pushy.authorization.allow_all", False),
    "default": ("", False),
    "default_undeclared": ("", True),
}
# The parts each rule runs.
PARTS = {
    "allow_all": ("burst", "reconnect"),
    "default": ("burst", "reconnect", "visibility"),
    "default_undeclared": ("burst", "visibility"),
}
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
    rate: float = 20  # saves/s of the visibility scenario
    saves: int = 600

    @classmethod
    def smoke(cls) -> Scenario:
        return cls(
            subscribers=20, users=4, burst=10, warm_bursts=1, reconnects=40,
            rate=50, saves=5,
        )  # fmt: skip


def gateway_stats(server: servers.Running) -> dict:
    url = f"http://127.0.0.1:{server.port}/stats"
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


@contextlib.contextmanager
def serving(ctx) -> Iterator[servers.Running]:
    """A pushy gateway for one measure; if the measure fails, every thread's
    stack and the gateway's log go to the log first (a stuck pool shows)."""
    server = servers.start("pushy", ctx)
    try:
        yield server
    except BaseException:
        logger.error("the gateway when the measure failed:\n%s", server.diagnose())
        raise
    finally:
        server.stop()


def measure_burst(ctx, cookies: list[str], scenario: Scenario) -> dict:
    plan = Plan(burst=scenario.burst, idle=5.0)
    with serving(ctx) as server:
        clients = Clients(
            ctx, server.ws_url, scenario.subscribers, HEADERS,
            scenario.per_process, cookies,
        )  # fmt: skip
        try:
            ready = clients.wait_ready()
            if ready.get("failed"):  # refused for good: what the gateway was doing
                logger.error(
                    "%d subscribes failed (%s); the gateway:\n%s",
                    ready["failed"], ready.get("errors"), server.diagnose(),
                )  # fmt: skip
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


def measure_visibility(ctx, cookies: list[str], scenario: Scenario) -> dict:
    """Saves at ``scenario.rate``: unchanged visibility, then changing each time."""
    plan = Plan(
        burst=scenario.burst, latency_rate=scenario.rate,
        latency_saves=scenario.saves, idle=5.0,
    )  # fmt: skip
    with serving(ctx) as server:
        clients = Clients(
            ctx, server.ws_url, scenario.subscribers, HEADERS,
            scenario.per_process, cookies,
        )  # fmt: skip
        results = {}
        try:
            clients.wait_ready()
            burst(server, clients, ctx, plan)  # warms the caches and the tokens
            for name, extra in (("unchanged", ()), ("changing", ("--vary-level",))):
                before = gateway_stats(server)["authorizations"]
                run = latency(server, clients, ctx, plan, *extra)
                runs = gateway_stats(server)["authorizations"] - before
                seconds = scenario.saves / scenario.rate
                results[name] = {
                    "view_runs": runs,
                    "view_runs_per_second": round(runs / seconds, 1),
                    "first_ms": run["first"],
                    "last_ms": run["last"],
                    "lost": run["lost"],
                    "delivered": run["delivered"],
                    "server_cpu_per_delivery_us": run["server_cpu_per_delivery_us"],
                }
        finally:
            clients.quit()
        server.check_alive()
        return results


def measure_reconnect(ctx, cookies: list[str], scenario: Scenario) -> dict:
    with serving(ctx) as server:
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


def benchmark(
    scenario: Scenario,
    redis_url: str | None,
    workdir: str,
    parts: tuple[str, ...] = ("burst", "reconnect", "visibility"),
) -> dict:
    raise_open_files(scenario.reconnects * 2 + 1024)
    redis_server = None if redis_url else RedisServer().start()
    try:
        url = redis_url or redis_server.url
        ctx = context(workdir, url, redis_server.pid if redis_server else None)
        prepared = ctx.run_json(
            "bench.site.prepare", str(scenario.burst), str(scenario.users), timeout=300
        )
        cookies = [f"sessionid={key}" for key in prepared["session_keys"]]
        results: dict = {"scenario": dataclasses.asdict(scenario), "rules": {}}
        measures = {
            "burst": measure_burst,
            "reconnect": measure_reconnect,
            "visibility": measure_visibility,
        }
        for name, (rule, undeclared) in RULES.items():
            env = {
                **ctx.env,
                "BENCH_AUTHORIZE": rule,
                "BENCH_AUTHORIZATION_TTL": str(scenario.ttl),
            }
            if undeclared:
                env["BENCH_UNDECLARED"] = "1"
            rule_ctx = dataclasses.replace(ctx, env=env)
            entry = {}
            for part in PARTS[name]:
                if part in parts:
                    logger.info("%s: %s", name, part)
                    entry[part] = measures[part](rule_ctx, cookies, scenario)
            if entry:
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
    visibility = {
        f"{name} {kind}": {
            "view_runs_per_second": run["view_runs_per_second"],
            "last_p50_ms": run["last_ms"]["p50_ms"],
            "last_p99_ms": run["last_ms"]["p99_ms"],
            "lost": run["lost"],
        }
        for name, entry in rules.items()
        for kind, run in entry.get("visibility", {}).items()
    }
    found: dict = {"reconnect_seconds": reconnects, "visibility": visibility}
    if "burst" not in rules.get("allow_all", {}):
        return found
    open_rate = rules["allow_all"]["burst"]["warm"]["per_second"]
    bursts = {
        name: r["burst"]["warm"]["per_second"]
        for name, r in rules.items()
        if "burst" in r
    }
    return {
        "burst_per_second": bursts,
        "burst_ratio_to_allow_all": {
            name: round(rate / open_rate, 3) if open_rate else None
            for name, rate in bursts.items()
        },
        "cold_burst_seconds": rules["default"]["burst"]["cold"]["seconds"],
        **found,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.authz", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny, for tests")
    parser.add_argument("--redis-url", help="use this Redis instead of a private one")
    parser.add_argument("--out", default=str(RESULTS), help="where results go")
    parser.add_argument("--ttl", type=float, default=60, help="AUTHORIZATION_TTL")
    parser.add_argument(
        "--only",
        choices=("burst", "reconnect", "visibility"),
        help="run one scenario (its results go to authz_<scenario>_ttl*.json)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    scenario = Scenario.smoke() if args.smoke else Scenario()
    scenario.ttl = args.ttl
    workdir = tempfile.mkdtemp(prefix="pushy-bench-authz-")
    try:
        parts = (args.only,) if args.only else ("burst", "reconnect", "visibility")
        results = benchmark(scenario, args.redis_url, workdir, parts)
    except BaseException:
        logger.error("benchmark failed; server and client logs are in %s", workdir)
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    name = f"authz_{args.only}" if args.only else "authz_results"
    out = Path(args.out) / f"{name}_ttl{args.ttl:g}.json"
    if not args.smoke:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results["summary"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
