"""Commit-to-browser lag at 1,000 changed rows per second: triggers vs signals.

    python -m bench.capture [--seconds 10] [--rate 1000] [--ticks 10]

For each path, on a fresh PostgreSQL database (the machine's, or a private one
as the tests start it) and a private Redis: ``runpushy``, one WebSocket client
subscribed to the collection, and a driver process that changes ``rate`` rows a
second, in ``ticks`` transactions a second, each row once:

- **signals**: ``save()`` of each row in an atomic block (pushy publishes on
  commit, one pipeline per transaction);
- **triggers**: one ``QuerySet.update()`` per transaction, ``CAPTURE`` on,
  ``manage.py pushy_capture`` publishing.

The lag of a row is the time its update reached the client minus the time its
transaction committed (one clock: everything runs on this machine). Writes
bench/results/CAPTURE.md and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.harness.environment import RESULTS, ROOT
from tests.support.postgres import find_or_start
from tests.support.servers import RedisServer, free_port, stop_process, wait_for_output

SETTINGS = "bench.site.capture_settings"


# The driver: its own process, so the client's thread does not share its GIL.


def drive(seconds: float, rate: int, ticks: int) -> dict:
    from django.db import transaction

    from bench.site.benchapp.models import Item

    per_tick = rate // ticks
    pks = list(Item.objects.order_by("pk").values_list("pk", flat=True))
    commits: dict[int, float] = {}
    start = time.monotonic()
    capture = os.environ.get("BENCH_CAPTURE") == "1"
    for tick in range(int(seconds * ticks)):
        delay = start + tick / ticks - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        block = pks[tick * per_tick : (tick + 1) * per_tick]
        title = f"tick={tick}"
        with transaction.atomic():
            # Registered first, so it runs at commit before pushy's flush.
            transaction.on_commit(lambda t=tick: commits.setdefault(t, time.time()))
            if capture:
                Item.objects.filter(pk__in=block).update(title=title)
            else:
                for item in Item.objects.filter(pk__in=block):
                    item.title = title
                    item.save(update_fields=["title"])
    return {"commits": commits, "behind": max(0.0, time.monotonic() - start - seconds)}


# The harness.


class Listener(threading.Thread):
    """One WebSocket client on the collection, stamping each update on arrival."""

    def __init__(self, ws_url: str, expected: int) -> None:
        super().__init__(daemon=True)
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.ws.send(json.dumps({"action": "subscribe", "url": "/api/item/"}))
        assert json.loads(self.ws.recv())["type"] == "subscribed"
        self.expected = expected
        self.arrivals: list[tuple[int, float]] = []

    def run(self) -> None:
        try:
            while len(self.arrivals) < self.expected:
                message = json.loads(self.ws.recv())
                if message.get("type") == "update":
                    tick = int(message["data"]["title"].split("=")[1])
                    self.arrivals.append((tick, time.time()))
        except Exception:  # a timeout ends the run; what arrived is counted
            pass


def manage(env: dict, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "django", *args],
        cwd=ROOT, env=env, check=True, capture_output=True, timeout=600,
    )  # fmt: skip


def spawn(env: dict, marker: str, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "django", *args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    wait_for_output(proc, marker, 60)
    # Keep its pipe drained.
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    return proc


def say(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(path: str, pg, redis_url: str, args) -> dict:
    import psycopg

    name = f"pushy_bench_capture_{os.getpid()}_{path}"
    admin = psycopg.connect(
        host=pg.host, port=pg.port, user=pg.user, dbname="postgres", autocommit=True
    )
    admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    admin.execute(f'CREATE DATABASE "{name}"')
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE=SETTINGS,
        PYTHONPATH=str(ROOT),
        BENCH_REDIS_URL=redis_url,
        BENCH_PG_HOST=pg.host,
        BENCH_PG_PORT=str(pg.port),
        BENCH_PG_USER=pg.user,
        BENCH_PG_NAME=name,
        BENCH_CAPTURE="1" if path == "triggers" else "0",
    )
    procs = []
    try:
        say(f"{path}: migrate {name}")
        manage(env, "migrate", "--run-syncdb")
        rows = int(args.rate * args.seconds)
        seed = (
            "from bench.site.benchapp.models import Item; "
            f"Item.objects.bulk_create([Item(title='seed') for _ in range({rows})])"
        )
        manage({**env, "BENCH_CAPTURE": "0"}, "shell", "-c", seed)
        say(f"{path}: {rows:,} rows; starting the gateway")
        port = free_port()
        procs.append(
            spawn(env, "pushy gateway serving", "runpushy", "--port", str(port))
        )
        if path == "triggers":
            procs.append(spawn(env, "pushy capture active", "pushy_capture"))
        listener = Listener(f"ws://127.0.0.1:{port}/ws", rows)
        listener.start()
        say(f"{path}: driving")
        done = subprocess.run(
            [sys.executable, "-m", "bench.scenarios.capture", "--drive",
             "--seconds", str(args.seconds), "--rate", str(args.rate),
             "--ticks", str(args.ticks)],
            cwd=ROOT, env=env, check=True, capture_output=True, text=True,
            timeout=args.seconds * 10 + 60,
        )  # fmt: skip
        driven = json.loads(done.stdout.strip().splitlines()[-1])
        say(f"{path}: waiting for the last updates")
        listener.join(args.seconds + 30)
        commits = {int(k): v for k, v in driven["commits"].items()}
        lags = [arrived - commits[tick] for tick, arrived in listener.arrivals]
        return {
            "path": path,
            "rows": rows,
            "delivered": len(lags),
            "p50_ms": round(percentile(lags, 0.5) * 1000, 1),
            "p99_ms": round(percentile(lags, 0.99) * 1000, 1),
            "max_ms": round(max(lags) * 1000, 1),
            "driver_behind_s": round(driven["behind"], 3),
        }
    finally:
        for proc in reversed(procs):
            stop_process(proc)
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def report(results: list[dict], args, load: str) -> str:
    lines = [
        "# Capture: commit-to-browser lag",
        "",
        f"`python -m bench.capture --seconds {args.seconds} --rate {args.rate} "
        f"--ticks {args.ticks}`: {args.rate:,} changed rows per second in "
        f"{args.ticks} transactions per second, one WebSocket client on the "
        "collection, one `runpushy` process, PostgreSQL and Redis on the same "
        f"machine. Load average when it started: {load}.",
        "",
        "| path | rows changed | delivered | p50 | p99 | max | driver late by |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['path']} | {r['rows']:,} | {r['delivered']:,} | {r['p50_ms']} ms "
            f"| {r['p99_ms']} ms | {r['max_ms']} ms | {r['driver_behind_s']} s |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--ticks", type=int, default=10)
    parser.add_argument("--paths", default="signals,triggers")
    parser.add_argument("--out", default=str(RESULTS / "CAPTURE.md"))
    parser.add_argument("--drive", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        import django

        django.setup()
        print(json.dumps(drive(args.seconds, args.rate, args.ticks)))
        return
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    pg = find_or_start()
    redis_server = RedisServer().start()
    try:
        results = [
            measure(path, pg, redis_server.url, args) for path in args.paths.split(",")
        ]
    finally:
        redis_server.stop()
        pg.stop()
    text = report(results, args, load)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
