"""The placement of the buckets' slots by load (pushy.cluster_balance.plan),
a pure function: no Redis."""

from __future__ import annotations

import random

import pytest
from django.core.management import CommandError, call_command

from pushy.cluster_balance import master_loads, moves, plan, shares

A, B, C = "a:1", "b:1", "c:1"
NAMES = [A, B, C]
EVEN = [A] * 4 + [B] * 4 + [C] * 4


def busiest(loads, placement, names=NAMES) -> float:
    return max(shares(loads, placement, names).values())


def test_the_hottest_buckets_go_to_different_masters():
    # Three hot buckets, all on one master today.
    loads = [900, 400, 300] + [10] * 9
    placement = plan(loads, EVEN, NAMES)
    assert len({placement[0], placement[1], placement[2]}) == 3
    assert busiest(loads, placement) < busiest(loads, EVEN)
    assert placement[0] == A  # the hottest stays where it is


def test_an_even_load_moves_nothing():
    loads = [100] * 12
    assert plan(loads, EVEN, NAMES) == EVEN


def test_no_load_moves_nothing():
    assert plan([0] * 12, EVEN, NAMES) == EVEN


def test_a_bucket_hotter_than_the_rest_together_is_alone():
    loads = [1000] + [10] * 11
    placement = plan(loads, EVEN, NAMES, slack=0)
    assert [n for n in range(12) if placement[n] == placement[0]] == [0]
    # Within the slack (2 % of the load), fewer moves win: two stay with it.
    placement = plan(loads, EVEN, NAMES)
    assert [n for n in range(12) if placement[n] == placement[0]] == [0, 1, 2]
    assert max(master_loads(loads, placement, NAMES).values()) == 1020


def test_the_busiest_load_is_the_best_found_by_search():
    # Small enough to try every placement of 7 buckets on 3 masters.
    rng = random.Random(5)
    for _ in range(30):
        loads = [rng.randint(0, 100) for _ in range(7)]
        current = [rng.choice(NAMES) for _ in range(7)]
        best = min(max(master_loads(loads, p, NAMES).values()) for p in _every(7))
        placement = plan(loads, current, NAMES, slack=0)
        assert max(master_loads(loads, placement, NAMES).values()) == best
        # With a slack, the fewest moves of any placement within it.
        cap = best + 0.1 * sum(loads)
        fewest = min(
            len(moves(current, p))
            for p in _every(7)
            if max(master_loads(loads, p, NAMES).values()) <= cap
        )
        placement = plan(loads, current, NAMES, slack=0.1)
        assert max(master_loads(loads, placement, NAMES).values()) <= cap
        assert len(moves(current, placement)) == fewest


def test_moves_are_few_when_the_load_allows():
    # Only bucket 0 is too hot where it is: one move evens it out.
    loads = [30, 30, 30, 30, 20, 20, 20, 20, 20, 20, 10, 10]
    current = [A, A, A, A, B, B, B, B, C, C, C, C]
    placement = plan(loads, current, NAMES)
    assert busiest(loads, placement) < busiest(loads, current)
    assert len(moves(current, placement)) <= 2


def test_a_new_master_gets_buckets_and_a_gone_one_keeps_none():
    loads = [50] * 12
    placement = plan(loads, EVEN, [*NAMES, "d:1"])
    assert placement.count("d:1") == 3
    placement = plan(loads, EVEN, [A, B])
    assert set(placement) == {A, B} and placement.count(A) == 6


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="a load and an owner"):
        plan([1, 2], [A], NAMES)
    with pytest.raises(ValueError, match="no master"):
        plan([1], [A], [])


def _every(count):
    if count == 0:
        yield []
        return
    for rest in _every(count - 1):
        for name in NAMES:
            yield [*rest, name]


def test_the_bench_mix_leaves_no_master_over_40_percent():
    # The bench's realistic mix (bench/scenarios/cluster_layout.py): placed by
    # the counts of a draw's first half, the second half is measured.
    from bench.scenarios.cluster_layout import SEEDS, mix
    from pushy.redis_cluster import bucket

    worst = []
    for seed in SEEDS:
        publishes = mix(seed)
        half = len(publishes) // 2
        counted, later = [0] * 12, [0] * 12
        for index, (_, url) in enumerate(publishes):
            (counted if index < half else later)[bucket(url)] += 1
        placement = plan(counted, EVEN, NAMES)
        worst.append(busiest(later, placement))
    assert len(worst) == 20 and max(worst) <= 0.40, worst


def test_the_command_needs_a_cluster(settings):
    settings.PUSHY_SETTINGS = {
        **settings.PUSHY_SETTINGS,
        "REDIS_URL": "redis://127.0.0.1:1/0",
    }
    with pytest.raises(CommandError, match="does not name a Redis Cluster"):
        call_command("pushy_cluster_balance", "--dry-run")
