"""What a rolling restart of the gateways costs the pages: refetches (issue 24 item 5).

    python -m bench.rolling_restart              # history off, then on
    python -m bench.rolling_restart --clients 200 --rate 50

Two real gateways (``runpushy``) on a private Redis, and ``--clients`` WebSocket
clients, each following an object and the collection (``/api/shot/``) with the
versions it saw, as pushy.js does: on a close it reconnects after a short random
delay to a gateway that is up and subscribes again with its versions. Saves
continue at ``--rate`` a second (the real publisher, versions and all)
while gateway A is stopped (SIGTERM: its clients are closed with 1001) and
started again, then B. Counted per run, with the history off
(``HISTORY_LENGTH`` 0) and on (the default):

- resyncs: the ``resync`` messages the clients got, each a refetch of a URL;
- replayed: updates received from the history (the gateways' ``/stats``);
- missed: updates published for a URL a client followed that it neither
  received nor covered by a later resync (must be 0: never silently stale);
- duplicates: updates received twice.

Prints one JSON object; docs/deployment.md and docs/decisions.md ("Recovery
without refetch") quote it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
from collections import defaultdict
from typing import Any

import websocket

COLLECTION = "/api/shot/"
OBJECTS = 20


class Follower(threading.Thread):
    """One page: an object and the collection, their versions, reconnects."""

    def __init__(self, number: int, gateways: list, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.number = number
        self.gateways = gateways  # the shared list of ws URLs up now
        self.stop_event = stop
        self.urls = [f"/api/shot/{number % OBJECTS}/", COLLECTION]
        self.versions: dict[str, int | None] = dict.fromkeys(self.urls)
        self.received: dict[str, list[int]] = defaultdict(list)
        self.resyncs: dict[str, list[int]] = defaultdict(list)  # their versions
        self.start_version: int | None = None
        self.reconnects = 0
        self.ready = threading.Event()

    def run(self) -> None:
        rng = random.Random(self.number)
        while not self.stop_event.is_set():
            ws = self._connect(rng)
            if ws is None:
                time.sleep(0.05)
                continue
            try:
                self._follow(ws)
            except (websocket.WebSocketException, OSError):
                pass
            finally:
                ws.close()
            self.reconnects += 1
            time.sleep(rng.uniform(0.05, 0.5))  # pushy.js: a jittered backoff

    def _connect(self, rng: random.Random) -> Any:
        choices = list(self.gateways)
        rng.shuffle(choices)
        for url in choices:
            try:
                return websocket.create_connection(url, timeout=5)
            except (websocket.WebSocketException, OSError):
                continue
        return None

    def _follow(self, ws: Any) -> None:
        for url in self.urls:
            ws.send(json.dumps(
                {"action": "subscribe", "url": url, "version": self.versions[url]}
            ))  # fmt: skip
        ws.settimeout(0.5)
        while not self.stop_event.is_set():
            try:
                data = ws.recv()
            except websocket.WebSocketTimeoutException:
                continue
            if not data:  # a close frame: the gateway is going
                return
            self._handle(json.loads(data))

    def _handle(self, message: dict) -> None:
        kind = message.get("type")
        if kind == "subscribed":
            url, version = message["url"], message.get("version")
            if self.versions[url] is None:
                self.versions[url] = version
                if self.start_version is None or version > self.start_version:
                    self.start_version = version
            if all(v is not None for v in self.versions.values()):
                self.ready.set()
        elif kind == "update":
            for url in (message["url"], message.get("collection")):
                if url in self.versions:
                    self.received[url].append(message["version"])
                    self._saw(url, message["version"])
        elif kind == "resync" and "url" in message:
            self.resyncs[message["url"]].append(message["version"])
            self._saw(message["url"], message["version"])

    def _saw(self, url: str, version: int) -> None:
        if self.versions[url] is None or version > self.versions[url]:
            self.versions[url] = version

    def missed(self, published: dict[str, list[int]]) -> tuple[int, int]:
        """Updates of its URLs published after it started, neither received
        nor covered by a later resync; and duplicates received."""
        missed = duplicates = 0
        for url in self.urls:
            got = self.received[url]
            duplicates += len(got) - len(set(got))
            got_set, covered = set(got), max(self.resyncs[url], default=0)
            for version in published[url]:
                if version > self.start_version and version not in got_set:
                    missed += version > covered
        return missed, duplicates


class Truth(threading.Thread):
    """Every update as Redis published it (a pattern subscription of its own)."""

    def __init__(self, redis_url: str, prefix: str) -> None:
        super().__init__(daemon=True)
        import redis

        self.pubsub = redis.Redis.from_url(redis_url).pubsub()
        self.pubsub.psubscribe(prefix + "*")
        self.published: dict[str, list[int]] = defaultdict(list)
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            message = self.pubsub.get_message(timeout=0.2)
            if message and message["type"] == "pmessage":
                body = json.loads(message["data"])
                if "version" in body:
                    for url in (body["url"], body.get("collection")):
                        if url:
                            self.published[url].append(body["version"])


def one_run(
    start_gateway: Any,
    redis_url: str,
    history: int,
    clients: int,
    rate: float,
    settle: float = 2.0,
) -> dict:
    """One rolling restart with ``HISTORY_LENGTH`` = ``history``; its counts.

    ``start_gateway(port=None, **pushy_settings)`` starts a gateway (a
    tests.support.gateway.Gateway) and returns it.
    """
    from django.test import override_settings

    from pushy import conf, publisher
    from pushy.messages import Update

    options = {"AUTHORIZE": "pushy.authorization.allow_all", "HISTORY_LENGTH": history}
    pushy_settings = {**conf.user_settings(), "HISTORY_LENGTH": history}
    stats: dict[str, int] = defaultdict(int)
    with override_settings(PUSHY_SETTINGS=pushy_settings):
        running = [start_gateway(**options), start_gateway(**options)]
        ports = [gateway.port for gateway in running]
        gateways = [gateway.ws_url for gateway in running]
        truth = Truth(redis_url, conf.get("CHANNEL_PREFIX"))
        truth.start()
        stop = threading.Event()
        followers = [Follower(n, gateways, stop) for n in range(clients)]
        for follower in followers:
            follower.start()
        for follower in followers:
            if not follower.ready.wait(30):
                raise RuntimeError(f"client {follower.number} never subscribed")
        saving = threading.Event()

        def save() -> None:
            n = 0
            while not saving.is_set():
                pk = n % OBJECTS
                publisher.publish([Update(
                    url=f"/api/shot/{pk}/", event="update", model="testapp.shot",
                    pk=pk, collection=COLLECTION,
                )])  # fmt: skip
                n += 1
                time.sleep(1 / rate)

        saver = threading.Thread(target=save, daemon=True)
        saver.start()
        time.sleep(settle)
        for i in range(2):  # A, then B: stop, start again on the same port
            old = running[i]
            gateways.remove(old.ws_url)
            for key, value in old.get_json("/stats").items():
                if key in ("replays", "updates_replayed", "version_resyncs"):
                    stats[key] += value
            old.stop()
            running[i] = start_gateway(port=ports[i], **options)
            gateways.append(running[i].ws_url)
            time.sleep(settle)
        saving.set()
        saver.join()
        time.sleep(settle)
        stop.set()
        for gateway in running:
            for key, value in gateway.get_json("/stats").items():
                if key in ("replays", "updates_replayed", "version_resyncs"):
                    stats[key] += value
        truth.stopped.set()
        truth.join()
        for follower in followers:
            follower.join(5)
        for gateway in running:
            gateway.stop()
    missed = [f.missed(truth.published) for f in followers]
    return {
        "history_length": history,
        "clients": clients,
        "saves": len(truth.published[COLLECTION]),
        "reconnects": sum(f.reconnects for f in followers),
        "resyncs": sum(len(v) for f in followers for v in f.resyncs.values()),
        "replays": stats["replays"],
        "updates_replayed": stats["updates_replayed"],
        "version_resyncs": stats["version_resyncs"],
        "missed": sum(m for m, _ in missed),
        "duplicates": sum(d for _, d in missed),
    }


def publish_cost(redis_url: str, calls: int = 20_000, rounds: int = 3) -> dict:
    """Redis time per publish script call (``INFO commandstats``), history off
    and on, alternately: a 200-byte update of one of 1,000 objects per call."""
    import redis
    from django.test import override_settings

    from pushy import conf, versions

    store = redis.Redis.from_url(redis_url)
    sha = store.script_load(versions.PUBLISH_SCRIPT)
    body = json.dumps({"url": "", "event": "update", "pad": "x" * 150}).encode()
    found: dict[int, list[float]] = {0: [], 1000: []}
    for _ in range(rounds):
        for length in found:
            settings = {**conf.user_settings(), "HISTORY_LENGTH": length}
            with override_settings(PUSHY_SETTINGS=settings):
                keys = (versions.book_key(), versions.sender_key("bench"),
                        versions.history_key())  # fmt: skip
                store.delete(*keys)
                store.config_resetstat()
                pipe = store.pipeline(transaction=False)
                for n in range(calls):
                    url = f"/api/item/{n % 1000}/"
                    args = versions.publish_args(
                        86400, "bench", body, url, "/api/item/", ""
                    )
                    pipe.evalsha(sha, 3, *keys, *args)
                    if len(pipe) >= 1000:
                        pipe.execute()
                pipe.execute()
                stat = store.info("commandstats")["cmdstat_evalsha"]
                found[length].append(round(stat["usec_per_call"], 2))
    store.close()
    return {
        "calls": calls,
        "usec_per_call_history_off": found[0],
        "usec_per_call_history_on": found[1000],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--rate", type=float, default=20.0, help="saves per second")
    parser.add_argument("--cost-only", action="store_true", help="publish cost only")
    args = parser.parse_args(argv)
    from tests.support.servers import RedisServer

    with RedisServer() as server:
        os.environ["PUSHY_REDIS_URL"] = server.url
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
        import django

        django.setup()
        from tests.support.gateway import Gateway

        def start_gateway(port: int | None = None, **pushy_settings: Any) -> Any:
            return Gateway(server.url, pushy_settings=pushy_settings, port=port).start()

        cost = publish_cost(server.url)
        runs = [
            one_run(start_gateway, server.url, history, args.clients, args.rate)
            for history in ((0, 1000) if not args.cost_only else ())
        ]
    print(json.dumps({"publish_cost": cost, "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
