"""The same load through one Redis and through a Redis Cluster (issue 24, item 7).

    python -m bench.cluster            # 1,500 connections, about 3.5 minutes on 2 cores
    python -m bench.cluster --smoke    # 60 connections, seconds (the test suite's)
    python -m bench.cluster --report   # rewrite CLUSTER.md from cluster_results.json

For each layout, one after the other in one run: **one Redis**, and a private
**3-master (+3 replica) cluster** (tests/support/cluster.py) named to pushy by
``REDIS_URL = "redis+cluster://..."`` (nothing but pushy's public settings and
endpoints is used, so the scenario holds whatever channel layout pushy picks).
Two ``runpushy`` gateways each, and:

- **receiving**, before the load connects, first with one gateway up, then
  with both, each holding one client of the list (so that it receives every
  update whatever the channel layout: with subscriptions by interest a gateway
  hears only what its clients follow): ``--receive`` saves, one per
  transaction at 200/s (as many web processes publish), then as many in one
  transaction: each gateway's CPU
  per update it received (``updates_in`` of its /stats), and each Redis node's
  CPU per publish it ran (``INFO cpu`` around the saves, less the node's idle
  CPU over as long; publishes are the PUBLISH and SPUBLISH calls of
  ``INFO commandstats``);
- N connections split over the two gateways, each subscribed to one URL of a
  mix (``mix()``: a fifth on the list ``/api/item/``, the rest on items 1-10,
  drawn by a Zipf law): their gateways' RSS per connection, and idle CPU;
- **latency**: saves one at a time at ``--rate``, items 1-10 in turn; the time
  from before ``save()`` to the first and last of the update's subscribers;
- **bursts**: one transaction saves items 1..``--burst`` (pushy publishes them
  in one pipeline at commit), a warm-up burst then ``--bursts`` counted ones:
  deliveries/s (median), the exact loss, gateway CPU per delivery, Redis CPU
  per publish per node and on the busiest master.

Writes bench/results/cluster_results.json and CLUSTER.md (bench/report/cluster.py,
which also computes the sizing model docs/deployment.md quotes).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import redis

from bench.harness import servers
from bench.harness.environment import RESULTS, commit, context, machine, prepare_db
from bench.harness.loadgen import Clients, merge
from bench.harness.measure import RUNS, LoadSampler, drive, percentile
from bench.harness.procs import cpu_seconds, raise_open_files, rss_bytes
from bench.harness.servers import Context, Running
from bench.peers.registry import SETTINGS
from tests.support.cluster import ClusterServers
from tests.support.servers import RedisServer, free_port

logger = logging.getLogger("bench.cluster")

COLLECTION = "/api/item/"
OBJECTS = 10  # items 1..10 have watchers; the latency saves go round them
GATEWAYS = 2


def mix(slots: int = 50, collection_share: float = 0.2) -> list[str]:
    """The URLs connections subscribe to, round robin: ``slots`` of them, a
    ``collection_share`` on the list, the rest on the items by a Zipf law
    (s = 1.1: item 1 has about a third of the object pages' watchers)."""
    lists = round(slots * collection_share)
    weights = [1 / (i + 1) ** 1.1 for i in range(OBJECTS)]
    shares = [(slots - lists) * w / sum(weights) for w in weights]
    counts = [int(s) for s in shares]
    # Largest remainders take the slots the rounding down left.
    for i in sorted(range(OBJECTS), key=lambda i: counts[i] - shares[i]):
        if sum(counts) == slots - lists:
            break
        counts[i] += 1
    per_url = {COLLECTION: lists}
    per_url.update({f"/api/item/{pk}/": c for pk, c in enumerate(counts, 1)})
    # Each URL's slots spread evenly over the list, so that any stretch of
    # it (a load client's first connections) holds the mix too.
    spread = [((j + 0.5) / c, url) for url, c in per_url.items() for j in range(c)]
    return [url for _, url in sorted(spread)]


def watchers(urls: list[str], shares: list[int]) -> dict[str, int]:
    """Connections per URL when processes of ``shares`` connections each
    subscribe round robin over ``urls`` (bench/harness/client.py)."""
    counts: dict[str, int] = {}
    for share in shares:
        for j in range(share):
            counts[urls[j % len(urls)]] = counts.get(urls[j % len(urls)], 0) + 1
    return counts


# -- Redis nodes -----------------------------------------------------------


class Nodes:
    """The Redis processes of a layout, read through INFO (µs of CPU)."""

    def __init__(self, masters: list[int], replicas: list[int]) -> None:
        self.masters, self.replicas = masters, replicas
        self.clients = {p: redis.Redis(port=p) for p in masters + replicas}

    def read(self) -> dict[int, dict]:
        readings = {}
        for port, client in self.clients.items():
            cpu = client.info("cpu")
            stats = client.info("commandstats")
            readings[port] = {
                "cpu": cpu["used_cpu_user"] + cpu["used_cpu_sys"],
                "publishes": sum(
                    stats.get(f"cmdstat_{c}", {}).get("calls", 0)
                    for c in ("publish", "spublish")
                ),
                "at": time.monotonic(),
            }
        return readings

    def idle_rates(self, seconds: float) -> dict[int, float]:
        """CPU seconds per second each node uses with nothing to do (cron,
        the cluster bus), taken off every window's figure."""
        before = self.read()
        time.sleep(seconds)  # a window of nothing: there is no event to await
        after = self.read()
        return {
            p: (after[p]["cpu"] - before[p]["cpu"]) / (after[p]["at"] - before[p]["at"])
            for p in after
        }

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


def us_per(seconds: float, count: int) -> float | None:
    """``seconds`` of CPU per one of ``count``, in µs; None for none."""
    return round(seconds / count * 1e6, 2) if count else None


def node_costs(nodes: Nodes, before: dict, after: dict, idle: dict) -> dict:
    """CPU (less idle) and publishes of each node over one window."""
    costs = {}
    for port in before:
        wall = after[port]["at"] - before[port]["at"]
        cpu = after[port]["cpu"] - before[port]["cpu"] - idle[port] * wall
        costs[port] = {
            "cpu_s": max(0.0, cpu),
            "publishes": after[port]["publishes"] - before[port]["publishes"],
        }
    return costs


def add_costs(total: dict, more: dict) -> dict:
    for port, cost in more.items():
        entry = total.setdefault(port, {"cpu_s": 0.0, "publishes": 0})
        entry["cpu_s"] += cost["cpu_s"]
        entry["publishes"] += cost["publishes"]
    return total


def redis_summary(nodes: Nodes, costs: dict, updates: int) -> dict:
    """Per master: CPU µs per publish it ran; the busiest; the replicas' too."""
    masters = []
    for port in nodes.masters:
        c = costs[port]
        masters.append(
            {
                "port": port,
                "publishes": c["publishes"],
                "cpu_ms": round(c["cpu_s"] * 1000, 2),
                "us_per_publish": us_per(c["cpu_s"], c["publishes"]),
            }
        )
    busiest = max(masters, key=lambda m: m["cpu_ms"])
    published = sum(m["publishes"] for m in masters)
    master_cpu = sum(costs[p]["cpu_s"] for p in nodes.masters)
    replica_cpu = sum(costs[p]["cpu_s"] for p in nodes.replicas)
    return {
        "masters": masters,
        "busiest": busiest,
        "busiest_share": round(busiest["publishes"] / max(published, 1), 3),
        "busiest_cpu_share": round(busiest["cpu_ms"] / 1000 / master_cpu, 3)
        if master_cpu
        else None,
        "publishes": published,
        "updates": updates,
        "us_per_publish": us_per(master_cpu, published),
        "master_us_per_update": us_per(master_cpu, updates),
        "replica_us_per_update": us_per(replica_cpu, updates)
        if nodes.replicas
        else None,
    }


# -- gateways --------------------------------------------------------------


def http_json(port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, {}


def start_gateway(ctx: Context, timeout: float = 60) -> Running:
    """``runpushy`` on a free port; ready once ``/health`` answers 200 (its
    Redis subscriptions are live, docs/protocol.md)."""
    port = free_port()
    args = [sys.executable, "-m", "django", "runpushy", "--host", "127.0.0.1"]
    proc = servers.spawn(ctx, [*args, "--port", str(port)], SETTINGS)
    gateway = Running("pushy", port, [proc], [proc.log_path])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        gateway.check_alive()
        try:
            if http_json(port, "/health")[0] == 200:
                return gateway
        except OSError:
            pass  # not listening yet
        time.sleep(0.1)  # polling a port: there is no event to await
    gateway.stop()
    raise TimeoutError(f"gateway on {port} not healthy within {timeout}s")


def updates_in(gateways: list[Running]) -> list[int]:
    return [http_json(g.port, "/stats")[1]["updates_in"] for g in gateways]


def until_quiet(gateways: list[Running], quiet: float = 1.0, limit: float = 30) -> None:
    """Until no gateway received an update for ``quiet`` s (at most ``limit``)."""
    deadline = time.monotonic() + limit
    seen, since = updates_in(gateways), time.monotonic()
    while time.monotonic() - since < quiet and time.monotonic() < deadline:
        time.sleep(0.1)  # polling counters: there is no event to await
        now = updates_in(gateways)
        if now != seen:
            seen, since = now, time.monotonic()


def gateway_cpu(gateways: list[Running]) -> list[float]:
    return [cpu_seconds(g.procs[0].pid) for g in gateways]


# -- phases ----------------------------------------------------------------


@contextmanager
def window(gateways: list[Running], nodes: Nodes, idle: dict):
    """What the gateways and the Redis nodes spent over the ``with`` block,
    their idle CPU taken off (``idle``: "gateways" and "redis" rates)."""
    spent: dict = {}
    cpu, received, reading = gateway_cpu(gateways), updates_in(gateways), nodes.read()
    started = time.monotonic()
    yield spent
    wall = time.monotonic() - started
    after = gateway_cpu(gateways)
    spent["gateway_cpu_s"] = [
        max(0.0, a - b - idle["gateways"] * wall)
        for a, b in zip(after, cpu, strict=True)
    ]
    spent["received"] = [
        a - b for a, b in zip(updates_in(gateways), received, strict=True)
    ]
    spent["redis"] = node_costs(nodes, reading, nodes.read(), idle["redis"])
    spent["wall_s"] = wall


def receiving(
    ctx: Context, gateways: list[Running], nodes: Nodes, plan, headers: dict
) -> dict:
    """What receiving an update costs a gateway (its one delivery to the list's
    client included), what publishing it costs Redis with ``len(gateways)``
    gateways listening; one save per transaction at ``plan.receive_rate`` (as
    many web processes publish), then all in one transaction (one pipeline)."""
    lists = [
        Clients(ctx, g.ws_url, 1, headers, per_process=1, urls=[COLLECTION])
        for g in gateways
    ]
    try:
        if sum(c.wait_ready()["subscribed"] for c in lists) != len(gateways):
            raise RuntimeError("the list's clients could not subscribe")
        return _receiving(ctx, gateways, nodes, plan)
    finally:
        for clients in lists:
            clients.quit()


def _receiving(ctx: Context, gateways: list[Running], nodes: Nodes, plan) -> dict:
    idle_gateway = idle_cpu(gateways, plan.idle_window) / len(gateways)
    idle = {"gateways": idle_gateway, "redis": nodes.idle_rates(plan.idle_window)}
    pks = ",".join(str(pk) for pk in range(1, plan.receive + 1))
    pace = ["--rate", str(plan.receive_rate), "--count", str(plan.receive)]
    result = {"gateways": len(gateways), "idle_cpu_per_gateway": round(idle_gateway, 4)}
    for kind, args in (
        ("singles", ["latency", *pace, "--pks", pks]),
        ("burst", ["burst", "--count", str(plan.receive)]),
    ):
        with window(gateways, nodes, idle) as spent:
            driven = drive(ctx, args[0], next(RUNS), *args[1:])
            until_quiet(gateways)
        received = sum(spent["received"])
        result[kind] = {
            "updates": plan.receive,
            "driver_behind_s": round(driven.get("behind", 0), 3),
            "received": received,
            "gateway_us_per_received": us_per(sum(spent["gateway_cpu_s"]), received),
            "redis": redis_summary(nodes, spent["redis"], plan.receive),
        }
    return result


class Load:
    """The subscribed connections: one load-client process per gateway."""

    def __init__(
        self, ctx: Context, gateways: list[Running], n: int, urls: list[str], headers
    ) -> None:
        self.urls = urls
        rss = [rss_bytes(g.procs[0].pid) for g in gateways]
        count = len(gateways)
        per = [n // count + (i < n % count) for i in range(count)]
        self.clients = [
            Clients(ctx, g.ws_url, share, headers, per_process=share, urls=urls)
            for g, share in zip(gateways, per, strict=True)
        ]
        ready = [c.wait_ready() for c in self.clients]
        self.subscribed = sum(r["subscribed"] for r in ready)
        if self.subscribed != n:
            errors = sorted({e for r in ready for e in r["errors"]})
            self.quit()
            raise RuntimeError(f"{self.subscribed} of {n} subscribed: {errors}")
        grown = sum(rss_bytes(g.procs[0].pid) for g in gateways) - sum(rss)
        self.bytes_per_connection = round(grown / n)
        self.watchers = watchers(urls, [s for c in self.clients for s in c.shares])

    def measure(self, run: int, expect: dict[str, int], deadline: float, titles: bool):
        for clients in self.clients:
            clients.start_measuring(run, expect, deadline, titles, plan_idle=5.0)

    def collect(self) -> dict:
        return merge([c.collect() for c in self.clients])

    def quit(self) -> None:
        for clients in self.clients:
            clients.quit()


def idle_cpu(gateways: list[Running], seconds: float) -> float:
    """The gateways' CPU per second, summed, with the connections held idle."""
    before = sum(gateway_cpu(gateways))
    time.sleep(seconds)  # a window of nothing: there is no event to await
    return (sum(gateway_cpu(gateways)) - before) / seconds


def latency(ctx, gateways, nodes, load: Load, plan, idle: dict) -> dict:
    """Saves of items 1..OBJECTS in turn at ``plan.rate``; first and last delivery."""
    pks = list(range(1, OBJECTS + 1))
    saves = plan.latency_saves
    of_pk = {pk: sum(1 for s in range(saves) if pks[s % len(pks)] == pk) for pk in pks}
    expect = {COLLECTION: saves, **{f"/api/item/{pk}/": of_pk[pk] for pk in pks}}
    run = next(RUNS)
    load.measure(run, expect, saves / plan.rate + 20, True)
    with window(gateways, nodes, idle) as spent:
        pace = ["--rate", str(plan.rate), "--count", str(saves)]
        driven = drive(ctx, "latency", run, *pace, "--pks", ",".join(map(str, pks)))
        got = load.collect()
    times = {int(seq): t for seq, t in driven["times"].items()}
    reach = load.watchers.get(COLLECTION, 0)
    firsts, lasts = [], []
    for seq, (first, last, count) in got["by_seq"].items():
        pk = pks[seq % len(pks)]
        if seq in times and count >= reach + load.watchers.get(f"/api/item/{pk}/", 0):
            firsts.append((first - times[seq]) * 1000)
            lasts.append((last - times[seq]) * 1000)
    delivered = got["delivered"]
    return {
        "saves": saves,
        "rate": plan.rate,
        "driver_behind_s": round(driven["behind"], 3),
        "delivered": delivered,
        "expected": got["expected"],
        "lost": max(0, got["expected"] - delivered - got["late"]),
        "late": got["late"],
        "updates_reaching_all": len(lasts),
        "first": {"p50_ms": percentile(firsts, 50), "p99_ms": percentile(firsts, 99)},
        "last": {"p50_ms": percentile(lasts, 50), "p99_ms": percentile(lasts, 99)},
        **gateway_figures(spent, delivered),
        "redis": redis_summary(nodes, spent["redis"], saves),
    }


def gateway_figures(spent: dict, delivered: int) -> dict:
    cpu, received = sum(spent["gateway_cpu_s"]), sum(spent["received"])
    return {
        "received": received,
        "gateway_cpu_s": round(cpu, 3),
        "gateway_us_per_delivery": us_per(cpu, delivered),
    }


def burst(ctx, gateways, nodes, load: Load, plan, idle: dict) -> dict:
    """One transaction saves items 1..``plan.burst``."""
    expect = {COLLECTION: plan.burst}
    for pk in range(1, OBJECTS + 1):
        expect[f"/api/item/{pk}/"] = int(pk <= plan.burst)
    run = next(RUNS)
    load.measure(run, expect, 120, False)
    with window(gateways, nodes, idle) as spent:
        driven = drive(ctx, "burst", run, "--count", str(plan.burst))
        got = load.collect()
    span = got["last"] - driven["committed"] if got["last"] else None
    delivered = got["delivered"]
    return {
        "delivered": delivered,
        "expected": got["expected"],
        "lost": max(0, got["expected"] - delivered - got["late"]),
        "late": got["late"],
        "closed": got["closed"],
        "seconds": round(span, 4) if span else None,
        "per_second": round(delivered / span) if span else 0,
        "spent": spent,
    }


def bursts(ctx, gateways, nodes, load: Load, plan, idle: dict) -> dict:
    """A warm-up burst (its loss counts), then ``plan.bursts`` counted ones."""
    runs = [
        burst(ctx, gateways, nodes, load, plan, idle) for _ in range(plan.bursts + 1)
    ]
    counted = runs[1:]
    costs: dict = {}
    spent = {"gateway_cpu_s": [0.0] * len(gateways), "received": [0] * len(gateways)}
    for r in counted:
        add_costs(costs, r["spent"]["redis"])
        for i in range(len(gateways)):
            spent["gateway_cpu_s"][i] += r["spent"]["gateway_cpu_s"][i]
            spent["received"][i] += r["spent"]["received"][i]
    delivered = sum(r["delivered"] for r in counted)
    rates = [r["per_second"] for r in counted]
    return {
        "updates": plan.burst,
        "per_second": statistics.median(rates),
        "runs_per_second": rates,
        "warm_up_per_second": runs[0]["per_second"],
        "seconds": [r["seconds"] for r in counted],
        "delivered": delivered,
        "expected": sum(r["expected"] for r in counted),
        "lost_total": sum(r["lost"] for r in runs),
        "late": sum(r["late"] for r in runs),
        "closed": sum(r["closed"] for r in runs),
        **gateway_figures(spent, delivered),
        "redis": redis_summary(nodes, costs, plan.burst * len(counted)),
    }


# -- layouts ---------------------------------------------------------------


@contextmanager
def one_redis():
    server = RedisServer().start()
    try:
        yield server.url, Nodes([server.port], []), {"redis": _version(server.port)}
    finally:
        server.stop()


@contextmanager
def cluster():
    try:
        running = ClusterServers().start()
    except TimeoutError:
        # A node's free port may be taken by another process before the node
        # binds it (the machine is shared): once more, on other ports.
        logger.warning("the cluster did not start: again", exc_info=True)
        running = ClusterServers().start()
    try:
        if running.version < (7,):
            raise Unavailable(f"Redis {running.version} has no sharded pub/sub")
        masters = [m.port for m in running.masters]
        url = "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in masters)
        nodes = Nodes(masters, [r.port for r in running.replicas])
        yield url, nodes, {"redis": ".".join(map(str, running.version))}
    finally:
        running.stop()


class Unavailable(Exception):
    """The layout cannot run here (said in the results, not a failure)."""


def _version(port: int) -> str:
    client = redis.Redis(port=port)
    try:
        return client.info("server")["redis_version"]
    finally:
        client.close()


LAYOUTS = {
    "single": ("one Redis", one_redis),
    "cluster": ("Redis Cluster, 3 masters + 3 replicas", cluster),
}


def measure_layout(name: str, plan, workdir: str) -> dict:
    label, start = LAYOUTS[name]
    load_sampler = LoadSampler(2.0)
    started = time.monotonic()
    try:
        with start() as (url, nodes, about):
            ctx = context(workdir, url, None)
            try:
                result = {"label": label, **about, **run_layout(ctx, nodes, plan)}
            finally:
                nodes.close()
    except Unavailable as e:
        result = {"label": label, "skipped": str(e)}
    result["load"] = load_sampler.done()
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def run_layout(ctx: Context, nodes: Nodes, plan) -> dict:
    gateways: list[Running] = []
    load = None
    session = prepare_db(ctx, max(plan.burst, plan.receive))
    headers = {"Origin": "http://localhost", "Cookie": f"sessionid={session}"}
    try:
        gateways.append(start_gateway(ctx))
        result = {"receive_1": receiving(ctx, gateways, nodes, plan, headers)}
        gateways.append(start_gateway(ctx))
        result["receive_2"] = receiving(ctx, gateways, nodes, plan, headers)
        load = Load(ctx, gateways, plan.connections, mix(), headers)
        result["connect"] = {
            "connections": load.subscribed,
            "gateways": len(gateways),
            "watchers": load.watchers,
            "bytes_per_connection": load.bytes_per_connection,
        }
        idle = {"gateways": 0.0, "redis": nodes.idle_rates(plan.idle_window)}
        per_gateway = idle_cpu(gateways, plan.idle_seconds) / len(gateways)
        result["connect"]["idle_cpu_per_gateway"] = round(per_gateway, 4)
        idle["gateways"] = per_gateway
        result["latency"] = latency(ctx, gateways, nodes, load, plan, idle)
        result["burst"] = bursts(ctx, gateways, nodes, load, plan, idle)
        for gateway in gateways:
            gateway.check_alive()
        return result
    finally:
        if load is not None:
            load.quit()
        for gateway in gateways:
            gateway.stop()


# -- the run ---------------------------------------------------------------


class Plan(argparse.Namespace):
    connections = 1500
    rate = 20.0
    latency_saves = 600
    burst = 200
    bursts = 3
    receive = 1000
    receive_rate = 200.0
    idle_seconds = 10.0  # the held connections' idle CPU: heartbeats
    idle_window = 3.0  # idle CPU taken off each phase's figures
    layouts = "single,cluster"


SMOKE = dict(
    connections=60, rate=50.0, latency_saves=10, burst=20, bursts=1,
    receive=20, receive_rate=100.0, idle_seconds=0.3,
    idle_window=0.3,
)  # fmt: skip


def benchmark(plan: Plan, workdir: str) -> dict:
    from bench.site import settings as site

    load_before = os.getloadavg()[0]
    raise_open_files(plan.connections * 2 + 1024)
    started = time.time()
    layouts = {}
    for name in plan.layouts.split(","):
        logger.info("%s: %d connections", name, plan.connections)
        layouts[name] = measure_layout(name, plan, workdir)
    return {
        "layouts": layouts,
        "meta": {
            "commit": commit(),
            "started": started,
            "seconds": round(time.time() - started, 1),
            "machine": machine(),
            "load_before": round(load_before, 2),
            "plan": {k: getattr(plan, k) for k in vars(Plan) if not k.startswith("_")},
            "mix": mix(),
            # The sizing model scales idle CPU from this to the default 25 s.
            "ping_interval": site.PUSHY_SETTINGS["PING_INTERVAL"],
        },
    }


def parse_args(argv: list[str] | None) -> tuple[Plan, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds")
    parser.add_argument("--report", action="store_true", help="only rewrite CLUSTER.md")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--note", default="")
    for key in ("connections", "latency_saves", "burst", "bursts", "receive"):
        parser.add_argument("--" + key.replace("_", "-"), type=int)
    parser.add_argument("--rate", type=float)
    parser.add_argument("--layouts", help="comma-separated: single,cluster")
    args = parser.parse_args(argv)
    plan = Plan(**(SMOKE if args.smoke else {}))
    for key in ("connections", "latency_saves", "burst", "bursts", "receive", "rate",
                "layouts"):  # fmt: skip
        if getattr(args, key) is not None:
            setattr(plan, key, getattr(args, key))
    return plan, args


def main(argv: list[str] | None = None) -> int:
    from bench.report import cluster as report

    plan, args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out = Path(args.out)
    if args.report:
        report.write(json.loads((out / "cluster_results.json").read_text()), out)
        return 0
    workdir = tempfile.mkdtemp(prefix="pushy-bench-cluster-")
    try:
        results = benchmark(plan, workdir)
    except BaseException:
        logger.error("failed; gateway and client logs are in %s", workdir)
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    results["meta"]["note"] = args.note
    out.mkdir(parents=True, exist_ok=True)
    if not args.smoke:
        (out / "cluster_results.json").write_text(json.dumps(results, indent=1) + "\n")
        report.write(results, out)
    print(json.dumps(report.summary(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
