"""Make the updates: real ``save()`` calls in a Django process of their own.

    python -m bench.harness.driver latency --run 3 --rate 20 --count 200 [--pk 1]
        saves item 1 (or --pk) every 1/rate s; its title holds the run, the sequence
        number and the time just before save(), when the latency clock starts;
    python -m bench.harness.driver latency ... --pks 1,2,3
        saves those items in turn (save seq is of item pks[seq % len(pks)]);
    python -m bench.harness.driver latency ... --vary-level
        the same, each save also moving a field of VISIBILITY_FIELDS (the
        item's level, 0 <-> 1: nobody loses the item, every gateway asks again);
    python -m bench.harness.driver burst --run 4 --count 200
        saves items 1..count in one transaction: pushy publishes the 200 updates
        in one pipeline when it commits, the way a bulk edit does.

Prints one JSON line: the save times of a latency run, the commit time of a burst.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import django


def latency(
    run: int,
    rate: float,
    count: int,
    pk: int = 1,
    vary_level: bool = False,
    pks: list[int] | None = None,
) -> dict:
    from bench.site.benchapp.models import Item

    by_pk = Item.objects.in_bulk(pks or [pk])
    turn = [by_pk[p] for p in pks or [pk]]
    times: dict[int, float] = {}
    start = time.monotonic()
    behind = 0.0
    for seq in range(count):
        # A fixed schedule, not a sleep after each save: the rate holds even
        # when some saves are slow.
        delay = start + seq / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        behind = max(behind, -delay)
        item = turn[seq % len(turn)]
        now = time.time()
        item.title = f"run{run} seq={seq} t={now:.6f}"
        fields = ["title"]
        if vary_level:  # a declared visibility field changes, nobody loses it
            item.level = 1 - item.level
            fields.append("level")
        item.save(update_fields=fields)
        times[seq] = now
    return {"times": times, "behind": behind}


def burst(run: int, count: int) -> dict:
    from django.db import transaction

    from bench.site.benchapp.models import Item

    items = list(Item.objects.filter(pk__lte=count).order_by("pk"))
    if len(items) < count:
        raise SystemExit(f"only {len(items)} items exist, {count} wanted")
    marks: dict[str, float] = {}
    with transaction.atomic():
        # Runs at commit, just before pushy's hook, which stays the last one.
        transaction.on_commit(lambda: marks.setdefault("committed", time.time()))
        for n, item in enumerate(items):
            item.title = f"run{run} {n}"
            item.save(update_fields=["title"])
    marks["published"] = time.time()
    return marks


def main() -> None:
    parser = argparse.ArgumentParser(description="save items for the benchmark")
    parser.add_argument("mode", choices=["latency", "burst"])
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--run", type=int, required=True, help="marks the titles")
    parser.add_argument("--pk", type=int, default=1, help="the item to save")
    parser.add_argument("--pks", help="comma-separated items to save in turn")
    parser.add_argument(
        "--vary-level", action="store_true", help="each save changes a visibility field"
    )
    args = parser.parse_args()
    django.setup()
    if args.mode == "latency":
        pks = [int(p) for p in args.pks.split(",")] if args.pks else None
        result = latency(args.run, args.rate, args.count, args.pk, args.vary_level, pks)
    else:
        result = burst(args.run, args.count)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
