"""What one followed URL costs on a Redis Cluster: a gateway's memory, Redis's
memory and the time of its first subscribe, for object subscriptions that say
so (``"object": true``: one channel) and for those that do not (13).

For each kind a fresh gateway on the private 3 + 3 cluster
(tests/support/cluster.py) gets ``--urls`` subscribes of distinct fresh URLs,
one at a time, over a few connections; the gateway's RSS and the masters'
summed ``used_memory`` are read before and after (their difference per URL),
and each subscribe's round trip is timed. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

PER_CONNECTION = 900  # under MAX_SUBSCRIPTIONS (1,000)


def _redis_memory(masters: list[int]) -> int:
    import redis

    total = 0
    for port in masters:
        with redis.Redis(port=port) as master:
            total += int(master.info("memory")["used_memory"])
    return total


def measure(cluster_url: str, masters: list[int], count: int, hint: bool) -> dict:
    from bench.harness.procs import rss_bytes
    from tests.gateway.clients import Client
    from tests.support.gateway import Gateway

    open_ = {"AUTHORIZE": "pushy.authorization.allow_all"}
    base = 1_000_000 if hint else 2_000_000
    with Gateway(cluster_url, pushy_settings=open_) as gateway:
        clients = [
            Client(gateway.ws_url, timeout=10)
            for _ in range(-(-count // PER_CONNECTION))
        ]
        # Warm up: the first subscribes load code and grow the pools.
        clients[0].request(action="subscribe", url="/api/shot/1/", object=hint)
        time.sleep(0.5)
        rss, memory = rss_bytes(gateway.pid), _redis_memory(masters)
        times = []
        for n in range(count):
            url = f"/api/shot/{base + n}/"
            started = time.perf_counter()
            answer = clients[n // PER_CONNECTION].request(
                action="subscribe", url=url, object=hint
            )
            times.append(time.perf_counter() - started)
            assert answer["type"] == "subscribed", answer
        time.sleep(0.5)
        rss_after, memory_after = rss_bytes(gateway.pid), _redis_memory(masters)
        for client in clients:
            client.close()
    return {
        "object": hint,
        "urls": count,
        "gateway_bytes_per_url": round((rss_after - rss) / count),
        "redis_bytes_per_url": round((memory_after - memory) / count),
        "first_subscribe_ms_median": round(statistics.median(times) * 1000, 3),
        "first_subscribe_ms_p90": round(
            statistics.quantiles(times, n=10)[-1] * 1000, 3
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=int, default=3000)
    options = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    from tests.support.cluster import ClusterServers

    running = ClusterServers().start()
    try:
        if running.version < (7,):
            print("Redis 7 is needed (sharded pub/sub)", file=sys.stderr)
            return 1
        masters = [m.port for m in running.masters]
        url = "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in masters)
        results = [measure(url, masters, options.urls, hint) for hint in (True, False)]
    finally:
        running.stop()
    print(json.dumps(results, indent=2))
    return 0
