"""Measure channel layouts for Redis Cluster mode (issue 24), on a real cluster.

    python -m bench.cluster_layout     # a private 3+3 cluster (tests/support)

Prints one JSON object (a run: bench/results/cluster_layout.json), whose figures
docs/decisions.md quotes in ("Redis Cluster: 12 buckets by object URL"). Nothing
of pushy runs here but its version scripts (``pushy/versions.py``), with PUBLISH
made SPUBLISH as cluster mode would run them, and its balance planner:

- spread: the largest share of a realistic mix of publishes a master runs (read
  from its ``INFO commandstats``), per layout: one channel per model (today's
  names), and N buckets by object URL with hash tags searched to sit in N
  evenly spaced slots, or named plainly (``{prefix:b<i>}``);
- balanced by load: 12 buckets placed by ``pushy_cluster_balance``'s planner
  from the counts of each draw's first half, the slots migrated on the cluster,
  the second half measured (``balanced()``);
- scripts: SPUBLISH inside the publish script, on a channel of the script's
  slot and of another slot; the per-bucket counter's Redis CPU per publish;
- lookups: 1,000 URLs' versions from one book, and from every bucket's book,
  grouped per master (one pipeline each);
- delivery: the time from SPUBLISH to a subscriber, through redis-py's
  ``ClusterPubSub.get_sharded_message`` (which polls its node connections in
  turn) and through one connection per master, each read by its own thread.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import threading
import time
import zlib

import redis
from redis.crc import key_slot

from pushy import cluster_balance, redis_cluster, versions
from tests.support.cluster import ClusterServers

PREFIX = "pushy_"
# A realistic mix: 5 models, one hot (60 % of the saves); objects drawn by a
# Zipf law (s = 1.1) over 10,000 per model, so a few objects are very hot.
MODELS = {"app.hot": 60, "app.b": 15, "app.c": 10, "app.d": 10, "app.e": 5}
OBJECTS = 10_000
PUBLISHES = 12_000
# The hottest objects decide much of the spread: twenty draws of the mix.
SEEDS = tuple(range(1, 21))
CLUSTER_SCRIPT = versions.PUBLISH_SCRIPT.replace(
    "redis.call('PUBLISH'", "redis.call('SPUBLISH'"
)


def script_keys(tag: str) -> list[str]:
    """The KEYS of pushy's cluster publish script in the bucket of ``tag``
    (braced): book, sender, history, load counter (``redis_cluster._keys``)."""
    version = tag + ":version:"
    return [version + "book", version + "sender:x", version + "history", tag + ":load"]


def even_tags(count: int, prefix: str = PREFIX) -> list[str]:
    """pushy's own tags (``redis_cluster.tags``) for ``count`` buckets, unbraced."""
    return [tag[1:-1] for tag in redis_cluster.tags(prefix, count)]


def plain_tags(count: int, prefix: str = PREFIX) -> list[str]:
    return [f"{prefix}:b{bucket}" for bucket in range(count)]


def bucket_of(url: str, count: int) -> int:
    return zlib.crc32(url.encode()) % count


def mix(seed: int) -> list[tuple[str, str]]:
    """(model, object URL) per publish."""
    rng = random.Random(seed)
    weights = [1 / (i + 1) ** 1.1 for i in range(OBJECTS)]
    models = rng.choices(list(MODELS), weights=list(MODELS.values()), k=PUBLISHES)
    # Which objects are hot is drawn too (so which buckets they fall in).
    order = list(range(OBJECTS))
    rng.shuffle(order)
    pks = rng.choices(order, weights=weights, k=PUBLISHES)
    return [(m, f"/api/{m}/{pk}/") for m, pk in zip(models, pks, strict=True)]


def layout_keys(name: str, model: str, url: str) -> tuple[str, str]:
    """(book key, channel) of one publish under the layout ``name``."""
    if name == "per-model":
        tag = f"{PREFIX}:{model}"
    else:
        kind, count = name.split("-")
        tags = even_tags(int(count)) if kind == "even" else plain_tags(int(count))
        tag = tags[bucket_of(url, int(count))]
    return "{" + tag + "}:version:book", "{" + tag + "}" + model


def spread(
    cluster: ClusterServers, client: redis.RedisCluster, name: str, seed: int
) -> dict:
    """Each master's share of the publishes of ``mix(seed)`` under ``name``."""

    def publishes():
        for model, url in mix(seed):
            book, channel = layout_keys(name, model, url)
            body = json.dumps({"url": url, "model": model})
            args = versions.publish_args(86400, channel, body.encode(), url, None, "")
            yield script_keys(book[: book.index("}") + 1]), args

    calls = evalsha_calls(cluster, client, CLUSTER_SCRIPT, publishes())
    total = sum(calls)
    return {
        "shares": [round(c / total, 3) for c in calls],
        "max": round(max(calls) / total, 3),
    }


def evalsha_calls(cluster, client, script: str, calls) -> list[int]:
    """Run ``script`` with each (keys, args) of ``calls`` in pipelines; each
    master's count of the calls it ran (``INFO commandstats``)."""
    nodes = [node.client() for node in cluster.masters]
    for node in nodes:
        node.config_resetstat()
    sha = client.script_load(script)
    pipe = client.pipeline(transaction=False)
    for keys, args in calls:
        pipe.evalsha(sha, len(keys), *keys, *args)
        if len(pipe) >= 1000:
            pipe.execute()
    pipe.execute()
    found = [
        node.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
        for node in nodes
    ]
    for node in nodes:
        node.close()
    return found


def bucket_masters(client: redis.RedisCluster, tags: list[str]) -> list[int]:
    """How many of the buckets' tags each master owns."""
    ports = sorted({n.port for n in client.get_primaries()})
    owners = [client.get_node_from_key("{" + tag + "}").port for tag in tags]
    return [owners.count(port) for port in ports]


def scripts(client: redis.RedisCluster) -> dict:
    """SPUBLISH in the publish script: on the book's slot, and off it."""
    tag = even_tags(12)[0]
    book = "{" + tag + "}:version:book"
    results = {}
    for label, channel in (("same slot", "{" + tag + "}app.hot"), ("other", "x")):
        args = versions.publish_args(86400, channel, b'{"u":1}', "/u/1/", None, "")
        try:
            reply = client.eval(CLUSTER_SCRIPT, 2, book, book + ":s", *args)
            results[label] = f"ran: {reply}"
        except redis.ResponseError as e:
            results[label] = f"refused: {str(e)[:160]}"
    return results


def publish_cost(cluster: ClusterServers, client: redis.RedisCluster) -> dict:
    """Redis CPU (µs per call, ``INFO commandstats``) of pushy's publish script
    sending to one channel (an object's) and to two (its collection's too),
    with a subscriber on each, as a gateway following both would be."""
    tag = redis_cluster.tags(PREFIX)[0]
    keys = script_keys(tag)
    book = keys[0]
    channels = [tag + "o:/api/app.hot/1/", tag + "c:/api/app.hot/"]
    node = client.get_node_from_key(book)
    master = redis.Redis(host=node.host, port=node.port)
    pubsub = master.pubsub()
    pubsub.ssubscribe(*channels)
    for _ in channels:
        pubsub.get_message(timeout=1)
    sha = master.script_load(redis_cluster.PUBLISH_SCRIPT)
    body = json.dumps({"url": "/api/app.hot/1/", "model": "app.hot", "x": "y" * 200})
    result = {}
    for label, collection in (("one channel", ""), ("two channels", channels[1])):
        master.config_resetstat()
        args = versions.publish_args(86400, channels[0], body.encode(), "/u/", None, "")
        pipe = master.pipeline(transaction=False)
        for _ in range(5000):
            pipe.evalsha(sha, len(keys), *keys, *args, collection)
        pipe.execute()
        stats = master.info("commandstats")["cmdstat_evalsha"]
        result[f"{label} µs per publish"] = round(stats["usec_per_call"], 1)
        while pubsub.get_message(timeout=0.01):
            pass
    pubsub.close()
    master.close()
    return result


def counter_cost(client: redis.RedisCluster, rounds: int = 9) -> dict:
    """Redis CPU (µs per call, ``INFO commandstats``) of the publish script
    without and with the per-bucket counter (``redis_cluster._counted``):
    5,000 calls of each in turn, ``rounds`` times; the medians, and the
    median of each round's difference (the machine's load varies)."""
    tag = "{" + even_tags(12)[0] + "}"
    keys = script_keys(tag)
    node = client.get_node_from_key(keys[0])
    master = redis.Redis(host=node.host, port=node.port)
    args = versions.publish_args(86400, tag + "app.hot", b'{"u":1}', "/u/", None, "")
    args.append("")  # no collection channel
    uncounted = redis_cluster._to_both(CLUSTER_SCRIPT)
    scripts = {"without": uncounted, "with": redis_cluster.PUBLISH_SCRIPT}
    found: dict[str, list[float]] = {label: [] for label in scripts}
    for _ in range(rounds):
        for label, script in scripts.items():
            sha = master.script_load(script)
            master.config_resetstat()
            pipe = master.pipeline(transaction=False)
            for _ in range(5000):
                pipe.evalsha(sha, len(keys), *keys, *args)
            pipe.execute()
            stats = master.info("commandstats")["cmdstat_evalsha"]
            found[label].append(stats["usec_per_call"])
    master.close()
    added = [b - a for a, b in zip(found["without"], found["with"], strict=True)]
    result = {f"{k} µs per publish": statistics.median(v) for k, v in found.items()}
    result["added µs (median of rounds)"] = round(statistics.median(added), 2)
    return result


def balanced(cluster: ClusterServers, client: redis.RedisCluster) -> dict:
    """12 buckets placed by load (``pushy_cluster_balance``), per draw of the
    mix: the first half of its publishes is the counted window (the counters
    of the real publish script), the plan is applied by migrating the slots on
    the cluster, and the busiest master's share of the second half is measured
    (``INFO commandstats``), beside that of the first half on the even layout,
    to which each draw returns first."""
    tags = ["{" + tag + "}" for tag in even_tags(12)]
    slots = [key_slot(tag.encode()) for tag in tags]
    url = "redis+cluster://" + ",".join(f"127.0.0.1:{m.port}" for m in cluster.masters)
    nodes = cluster_balance.masters(client, url)
    names = [node.name for node in nodes]
    even = _owners(cluster, slots, nodes)
    before, after, moved = [], [], []
    try:
        for seed in SEEDS:
            _place(cluster, client, nodes, slots, even)
            publishes = mix(seed)
            half = len(publishes) // 2
            counted, share = _run(cluster, client, tags, publishes[:half])
            before.append(share)
            placement = cluster_balance.plan(counted, even, names)
            moved.append(len(cluster_balance.moves(even, placement)))
            _place(cluster, client, nodes, slots, placement)
            after.append(_run(cluster, client, tags, publishes[half:])[1])
        _place(cluster, client, nodes, slots, even)
    finally:
        for node in nodes:
            node.client.close()
    return {
        "even-12, first halves": _summary(before),
        "balanced-12, second halves": _summary(after),
        "buckets moved per draw (median, max)": [statistics.median(moved), max(moved)],
    }


def _owners(cluster: ClusterServers, slots: list[int], nodes) -> list[str]:
    ports = [cluster.owner(slot).port for slot in slots]
    return [next(n.name for n in nodes if n.port == port) for port in ports]


def _place(cluster, client, nodes, slots: list[int], placement) -> None:
    """Migrate the bucket slots to ``placement`` (a master's name per bucket)."""
    by_name = {node.name: node for node in nodes}
    current = _owners(cluster, slots, nodes)
    for number in cluster_balance.moves(current, placement):
        source, target = by_name[current[number]], by_name[placement[number]]
        others = [n for n in nodes if n not in (source, target)]
        cluster_balance.migrate(slots[number], source, target, others)
    client.nodes_manager.initialize()  # the client's map, read again


def _run(cluster, client, tags: list[str], publishes) -> tuple[list[int], float]:
    """Publish through pushy's cluster script: each bucket's counted
    publishes (its load key's delta) and the busiest master's share."""
    loads = [tag + ":load" for tag in tags]
    start = [int(client.get(key) or 0) for key in loads]

    def calls():
        for model, url in publishes:
            tag = tags[bucket_of(url, len(tags))]
            body = json.dumps({"url": url, "model": model}).encode()
            args = versions.publish_args(86400, tag + model, body, url, None, "")
            yield script_keys(tag), [*args, ""]  # no collection channel

    found = evalsha_calls(cluster, client, redis_cluster.PUBLISH_SCRIPT, calls())
    ends = [int(client.get(key) or 0) for key in loads]
    counted = [end - s for end, s in zip(ends, start, strict=True)]
    return counted, round(max(found) / sum(found), 3)


def lookups(client: redis.RedisCluster, count: int = 12) -> dict:
    """ms for 1,000 URLs' versions: one book; every bucket's, per master."""
    urls = [f"/api/app.hot/{i}/" for i in range(1000)]
    sha = client.script_load(versions.LOOKUP_SCRIPT)
    tags = even_tags(count)
    args = versions.lookup_args(urls)

    def one() -> None:
        client.evalsha(sha, 1, "{" + tags[0] + "}:version:book", *args)

    def every() -> None:
        pipe = client.pipeline(transaction=False)
        for tag in tags:
            pipe.evalsha(sha, 1, "{" + tag + "}:version:book", *args)
        pipe.execute()

    return {
        "one book ms": _median_ms(one),
        f"{count} books ms": _median_ms(every),
    }


def _summary(shares: list[float]) -> dict:
    """The busiest master's share over the draws of the mix."""
    return {
        "median": round(statistics.median(shares), 3),
        "max": max(shares),
        "draws over 0.4": f"{sum(s > 0.4 for s in shares)}/{len(shares)}",
    }


def _median_ms(action, runs: int = 20) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 2)


def delivery(cluster: ClusterServers, client: redis.RedisCluster) -> dict:
    """SPUBLISH-to-read latency (ms) with one reader per master, and round robin."""
    channels = ["{" + tag + "}app.hot" for tag in even_tags(12)]
    return {
        "ClusterPubSub round robin": _latencies(client, channels, _round_robin),
        "a connection per master": _latencies(
            client, channels, lambda c, ch, heard: _per_master(cluster, c, ch, heard)
        ),
    }


def _latencies(client, channels, reader) -> dict:
    heard: dict[str, float] = {}
    stop = reader(client, channels, heard)
    rng = random.Random(3)
    sent = {}
    for i in range(300):
        time.sleep(rng.uniform(0.002, 0.02))
        body = f"m{i}"
        sent[body] = time.perf_counter()
        client.spublish(rng.choice(channels), body)
    deadline = time.monotonic() + 5
    while len(heard) < len(sent) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop()
    lags = sorted((heard[b] - sent[b]) * 1000 for b in sent if b in heard)
    return {
        "p50": round(lags[len(lags) // 2], 2),
        "p99": round(lags[int(len(lags) * 0.99)], 2),
        "lost": len(sent) - len(lags),
    }


def _round_robin(client, channels, heard):
    pubsub = client.pubsub()
    pubsub.ssubscribe(*channels)
    running = [True]

    def read() -> None:
        while running[0]:
            message = pubsub.get_sharded_message(timeout=1.0)
            if message and message["type"] == "smessage":
                heard[message["data"].decode()] = time.perf_counter()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    _settle(client, channels, heard)

    def stop() -> None:
        running[0] = False
        thread.join(3)
        pubsub.close()

    return stop


def _per_master(cluster, client, channels, heard):
    by_port: dict[int, list[str]] = {}
    for channel in channels:
        by_port.setdefault(client.get_node_from_key(channel).port, []).append(channel)
    running = [True]
    threads, pubsubs = [], []
    for port, mine in by_port.items():
        pubsub = redis.Redis(port=port).pubsub()
        for channel in mine:  # SSUBSCRIBE takes channels of one slot only
            pubsub.ssubscribe(channel)
        pubsubs.append(pubsub)

        def read(pubsub=pubsub) -> None:
            while running[0]:
                message = pubsub.get_message(timeout=1.0)
                if message and message["type"] == "smessage":
                    heard[message["data"].decode()] = time.perf_counter()

        threads.append(threading.Thread(target=read, daemon=True))
        threads[-1].start()
    _settle(client, channels, heard)

    def stop() -> None:
        running[0] = False
        for thread in threads:
            thread.join(3)
        for pubsub in pubsubs:
            pubsub.close()

    return stop


def _settle(client, channels, heard) -> None:
    """Until a message on each channel was heard (the subscriptions are in place)."""
    for channel in channels:
        marker = "settle:" + channel
        deadline = time.monotonic() + 5
        while marker not in heard and time.monotonic() < deadline:
            client.spublish(channel, marker)
            time.sleep(0.01)
    heard.clear()


def main() -> int:
    with ClusterServers() as cluster:
        client = cluster.client()
        layouts = ["per-model", "even-12", "even-24", "even-48", "even-96"]
        result = {
            "redis": ".".join(map(str, cluster.version)),
            "buckets per master": {
                f"{kind}-{n}": bucket_masters(client, tags(n))
                for kind, tags in (("even", even_tags), ("plain", plain_tags))
                for n in (8, 12, 16, 24)
            },
            "busiest master's share": {
                name: _summary([spread(cluster, client, name, s)["max"] for s in SEEDS])
                for name in layouts
            },
            "scripts": scripts(client),
            "publish cost": publish_cost(cluster, client),
            "counter cost": counter_cost(client),
            "balanced by load": balanced(cluster, client),
            "lookups": lookups(client),
            "delivery": delivery(cluster, client),
        }
        client.close()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
