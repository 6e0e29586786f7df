"""Placing the buckets' slots on a Redis Cluster's masters by measured load.

A bucket (``pushy.redis_cluster``) is one slot; its publish script counts its
runs in the bucket's ``load_key``. ``counts()`` reads the counters twice, a
window apart (the deltas: old traffic does not decide); ``plan()`` (pure)
places the buckets on the masters so that the busiest one carries the least,
moving few; ``migrate()`` moves one slot and its keys as ``redis-cli --cluster
reshard`` does. The hottest objects decide the spread, and one object's changes
cannot be split over masters without breaking its versions' order: placing
whole buckets by their load is what is left (docs/decisions.md).

``manage.py pushy_cluster_balance`` is the operator's command.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence

import redis
from redis.crc import key_slot

from pushy import redis_cluster
from pushy.exceptions import PushyError

# How long MIGRATE may take for one batch of keys (ms), and how many keys a batch.
MIGRATE_TIMEOUT_MS = 10_000
MIGRATE_BATCH = 100


class BalanceError(PushyError, RuntimeError):
    """Raised when a slot migration fails or is interrupted: the message says
    the state the slot was left in and how to finish it."""


@dataclasses.dataclass
class Master:
    """One master of the cluster: its ``host:port`` name, node id, connection."""

    name: str
    node_id: str
    client: redis.Redis

    @property
    def host(self) -> str:
        return self.name.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.name.rsplit(":", 1)[1])


def bucket_slots() -> list[int]:
    """The slot of each bucket (its hash tag's)."""
    return [
        key_slot(redis_cluster.tag(n).encode()) for n in range(redis_cluster.BUCKETS)
    ]


# Reading --------------------------------------------------------------------------


def masters(cluster: redis.RedisCluster, url: str) -> list[Master]:
    """The cluster's live masters, those without slots too (a master just
    added), as CLUSTER NODES names them; each with a connection of its own
    (close them)."""
    options = redis_cluster.node_options(url)
    first = cluster.get_primaries()[0]
    asked = redis.Redis(host=first.host, port=first.port, **options)
    try:
        text = asked.execute_command("CLUSTER", "NODES").decode()
    finally:
        asked.close()
    found = []
    for line in text.splitlines():
        node_id, address, flags = line.split()[:3]
        flags = set(flags.split(","))
        if "master" in flags and not flags & {"fail", "noaddr", "handshake"}:
            name = address.split("@")[0]
            host, port = name.rsplit(":", 1)
            client = redis.Redis(host=host, port=int(port), **options)
            found.append(Master(name, node_id, client))
    return sorted(found, key=lambda m: m.name)


def owners(nodes: Sequence[Master]) -> list[str]:
    """The master (``host:port``) owning each bucket's slot, as the first
    master's CLUSTER SLOTS says."""
    ranges = nodes[0].client.execute_command("CLUSTER", "SLOTS")
    found = []
    for slot in bucket_slots():
        owner = next((m for a, b, m, *_ in ranges if a <= slot <= b), None)
        if owner is None:
            raise BalanceError(f"slot {slot} has no master (is the cluster down?)")
        host = owner[0].decode() if isinstance(owner[0], bytes) else owner[0]
        found.append(f"{host}:{int(owner[1])}")
    return found


def totals(cluster: redis.RedisCluster) -> list[int]:
    """Each bucket's publish count so far (0 where none was counted)."""
    pipe = cluster.pipeline(transaction=False)
    for number in range(redis_cluster.BUCKETS):
        pipe.get(redis_cluster.load_key(number))
    return [int(value or 0) for value in pipe.execute()]


def counts(
    cluster: redis.RedisCluster,
    window: float,
    sleep: Callable[[float], None] = time.sleep,
) -> list[int]:
    """Each bucket's publishes during the next ``window`` seconds. A counter
    that went back (its key evicted or flushed) counts from 0."""
    with redis_cluster.redis_errors():
        before = totals(cluster)
        sleep(window)
        after = totals(cluster)
    return [a - b if a >= b else a for a, b in zip(after, before, strict=True)]


# Planning (pure) ------------------------------------------------------------------

# A placement whose busiest master carries up to this share of the load more
# than the least possible is as good, if it moves fewer buckets: a window's
# counts are a sample, and each move resyncs the pages of its bucket.
SLACK = 0.02
# Depth-first steps of plan()'s search at most (12 buckets on 3 masters take
# a few thousand).
SEARCH = 200_000


def master_loads(
    loads: Sequence[float], placement: Sequence[str], names: Sequence[str]
) -> dict[str, float]:
    """Each master's total load under ``placement`` (a master per bucket)."""
    found = dict.fromkeys(names, 0.0)
    for load, owner in zip(loads, placement, strict=True):
        found[owner] += load
    return found


def shares(
    loads: Sequence[float], placement: Sequence[str], names: Sequence[str]
) -> dict[str, float]:
    """Each master's share of the load under ``placement`` (0 with no load)."""
    per = master_loads(loads, placement, names)
    total = sum(per.values())
    return {name: (load / total if total else 0.0) for name, load in per.items()}


def plan(
    loads: Sequence[float],
    current: Sequence[str],
    names: Sequence[str],
    slack: float = SLACK,
) -> list[str]:
    """A master per bucket that minimises the busiest master's load, then,
    among the placements within ``slack`` (a share of the whole load) of that
    least, the number of buckets moved. A master may be left with no bucket.

    The longest-processing-time greedy placement (hottest bucket first, onto
    the least loaded master, its current owner on ties), improved by single
    moves and swaps, bounds a depth-first search over every placement (hottest
    bucket first), cut where it cannot beat the best found; past ``SEARCH``
    steps (many masters) the best found so far is kept.
    """
    if len(loads) != len(current):
        raise ValueError("a load and an owner per bucket")
    if not names:
        raise ValueError("no master")
    names = list(names)
    greedy = _improve(loads, _greedy(loads, current, names), current, names)
    best = _Search(loads, current, names, greedy, 0).run()
    least = max(master_loads(loads, best, names).values())
    return _Search(loads, current, names, best, least + slack * sum(loads)).run()


class _Search:
    """Depth-first over the placements; a busiest load up to ``cap`` counts
    as the same (then fewer moves win)."""

    def __init__(self, loads, current, names, start, cap: float) -> None:
        self.loads, self.current, self.names = loads, current, names
        self.order = sorted(range(len(loads)), key=lambda n: (-loads[n], n))
        self.cap = cap
        self.best = list(start)
        per = master_loads(loads, start, names)
        self.score = (max(max(per.values()), cap), len(moves(current, start)))
        self.steps = 0
        self.total = sum(loads)

    def run(self) -> list[str]:
        self._place(0, dict.fromkeys(self.names, 0.0), list(self.current), 0)
        return self.best

    def _place(self, index: int, per: dict, placement: list, moved: int) -> None:
        self.steps += 1
        # No placement below can do better than the busiest so far, nor than
        # an even split of the whole load.
        bound = max(max(per.values()), self.total / len(self.names), self.cap)
        if (bound, moved) >= self.score or self.steps > SEARCH:
            return
        if index == len(self.order):
            self.best, self.score = list(placement), (bound, moved)
            return
        number = self.order[index]
        owner = self.current[number]
        # The current owner first (no move), then the least loaded masters.
        for name in sorted(self.names, key=lambda m: (m != owner, per[m])):
            per[name] += self.loads[number]
            placement[number] = name
            self._place(index + 1, per, placement, moved + (name != owner))
            per[name] -= self.loads[number]
        placement[number] = owner


def moves(current: Sequence[str], placement: Sequence[str]) -> list[int]:
    """The buckets whose master differs."""
    return [
        n for n, (a, b) in enumerate(zip(current, placement, strict=True)) if a != b
    ]


def _greedy(
    loads: Sequence[float], current: Sequence[str], names: list[str]
) -> list[str]:
    per = dict.fromkeys(names, 0.0)
    placement = list(current)
    for number in sorted(range(len(loads)), key=lambda n: (-loads[n], n)):
        least = min(per.values())
        tied = [name for name in names if per[name] == least]
        chosen = current[number] if current[number] in tied else tied[0]
        placement[number] = chosen
        per[chosen] += loads[number]
    return placement


def _score(
    loads: Sequence[float], placement: Sequence[str], current: Sequence[str],
    names: Sequence[str],
) -> tuple:  # fmt: skip
    per = sorted(master_loads(loads, placement, names).values(), reverse=True)
    return (per, len(moves(current, placement)))


def _improve(
    loads: Sequence[float], placement: list[str], current: Sequence[str],
    names: list[str],
) -> list[str]:  # fmt: skip
    best = list(placement)
    score = _score(loads, best, current, names)
    improved = True
    while improved:
        improved = False
        for candidate in _neighbours(best, names):
            candidate_score = _score(loads, candidate, current, names)
            if candidate_score < score:
                best, score, improved = candidate, candidate_score, True
                break
    return best


def _neighbours(placement: list[str], names: list[str]) -> Iterator[list[str]]:
    """Every placement one move or one swap away."""
    count = len(placement)
    for number in range(count):
        for name in names:
            if name != placement[number]:
                yield [*placement[:number], name, *placement[number + 1 :]]
    for a in range(count):
        for b in range(a + 1, count):
            if placement[a] != placement[b]:
                swapped = list(placement)
                swapped[a], swapped[b] = placement[b], placement[a]
                yield swapped


# Moving a slot ---------------------------------------------------------------------


def migrate(
    slot: int,
    source: Master,
    target: Master,
    others: Sequence[Master],
    step: Callable[[str], None] = lambda _: None,
) -> int:
    """Move ``slot`` and its keys from ``source`` to ``target``; the keys moved.

    IMPORTING on the target, MIGRATING on the source, MIGRATE the keys in
    batches (each key is deleted on the source only once the target holds it:
    none is lost), then NODE on the target, the source, and the other masters.
    ``step`` is told each step before it is taken. Run again on a slot left
    half-way, it goes on from where it stopped (``finish()``). Any failure is
    raised as BalanceError saying the state left and how to finish.
    """
    moved = 0
    done = "nothing changed yet"
    try:
        step(f"slot {slot}: IMPORTING on {target.name}")
        _setslot(target, slot, "IMPORTING", source.node_id)
        done = f"slot {slot} is IMPORTING on {target.name}"
        step(f"slot {slot}: MIGRATING on {source.name}")
        _setslot(source, slot, "MIGRATING", target.node_id)
        done = f"slot {slot} is MIGRATING from {source.name} to {target.name}"
        while keys := source.client.execute_command(
            "CLUSTER", "GETKEYSINSLOT", slot, MIGRATE_BATCH
        ):
            step(f"slot {slot}: MIGRATE {len(keys)} keys")
            _migrate_keys(source, target, keys)
            moved += len(keys)
        done += f" ({moved} keys moved, none left on the source)"
        for node in [target, source, *others]:
            step(f"slot {slot}: NODE {target.name} on {node.name}")
            _setslot(node, slot, "NODE", target.node_id)
            done += f"; {node.name} names {target.name} its owner"
    except (redis.RedisError, OSError, KeyboardInterrupt) as e:
        raise BalanceError(
            f"moving slot {slot} from {source.name} to {target.name} stopped: "
            f"{type(e).__name__}: {e}. State: {done}. No key is lost (a key is "
            "deleted on the source only once the target holds it). To finish, run "
            "`manage.py pushy_cluster_balance --finish` (or `redis-cli --cluster "
            "fix`); until then the slot's publishes wait (ASK/TRYAGAIN)."
        ) from e
    return moved


def _setslot(node: Master, slot: int, state: str, node_id: str) -> None:
    node.client.execute_command("CLUSTER", "SETSLOT", slot, state, node_id)


def _migrate_keys(source: Master, target: Master, keys: list) -> None:
    # REPLACE: a key on both sides is one a MIGRATE cut off copied but did not
    # delete; the source's copy is the live one (the slot's writes to keys it
    # holds run there until the slot moves).
    auth: list = []
    options = source.client.connection_pool.connection_kwargs
    if options.get("password"):
        user = options.get("username") or "default"
        auth = ["AUTH2", user, options["password"]]
    source.client.execute_command(
        "MIGRATE", target.host, target.port, "", 0, MIGRATE_TIMEOUT_MS,
        "REPLACE", *auth, "KEYS", *keys,
    )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class OpenMigration:
    """A slot a migration left half-way: MIGRATING on a source, or only
    IMPORTING on a target."""

    slot: int
    source: str
    target: str


def open_migrations(nodes: Sequence[Master]) -> list[OpenMigration]:
    """The slots some master says are migrating or importing (CLUSTER NODES,
    its own line: ``[slot->-id]``, ``[slot-<-id]``)."""
    by_id = {node.node_id: node.name for node in nodes}
    found: dict[int, OpenMigration] = {}
    for node in nodes:
        for slot, arrow, other in _open_slots(node):
            name = by_id.get(other, other)
            if arrow == "->-":
                found[slot] = OpenMigration(slot, node.name, name)
            else:
                found.setdefault(slot, OpenMigration(slot, name, node.name))
    return sorted(found.values(), key=lambda m: m.slot)


def _open_slots(node: Master) -> Iterator[tuple[int, str, str]]:
    text = node.client.execute_command("CLUSTER", "NODES")
    if isinstance(text, bytes):
        text = text.decode()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) > 2 and "myself" in parts[2]:
            for part in parts[8:]:
                if part.startswith("["):
                    slot, arrow, other = part[1:-1].partition("->-")
                    if not arrow:
                        slot, arrow, other = part[1:-1].partition("-<-")
                    yield int(slot), arrow, other


def finish(nodes: Sequence[Master], step: Callable[[str], None]) -> list[OpenMigration]:
    """Complete every migration left half-way, towards its target; those done."""
    by_name = {node.name: node for node in nodes}
    left = open_migrations(nodes)
    for migration in left:
        source, target = by_name.get(migration.source), by_name.get(migration.target)
        if source is None or target is None:
            raise BalanceError(
                f"slot {migration.slot} is half-way from {migration.source} to "
                f"{migration.target}, which is not a master now: use `redis-cli "
                "--cluster fix`"
            )
        others = [n for n in nodes if n not in (source, target)]
        migrate(migration.slot, source, target, others, step)
    return left


def apply(
    nodes: Sequence[Master],
    current: Sequence[str],
    placement: Sequence[str],
    step: Callable[[str], None] = lambda _: None,
) -> int:
    """Move each bucket whose master differs in ``placement``; the keys moved."""
    by_name = {node.name: node for node in nodes}
    slots = bucket_slots()
    moved = 0
    for number in moves(current, placement):
        source, target = by_name[current[number]], by_name[placement[number]]
        others = [n for n in nodes if n not in (source, target)]
        step(f"bucket {number}: slot {slots[number]} to {target.name}")
        moved += migrate(slots[number], source, target, others, step)
    return moved
