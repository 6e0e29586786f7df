"""Measure the slow-client rule: bursts to fast readers, stuck readers' memory.

    python -m bench.slow_clients            # on this tree, with a private Redis

Prints one JSON object (the figures docs/decisions.md quotes). Each case starts a
fresh ``runpushy`` (``tests/support/gateway.py``) with default settings, except
``AUTHORIZE``, which allows all:

- bursts published in one pipeline to 3 fast readers (websocket-client, reading
  as fast as they can): delivered updates and slow closes, 3 tries each;
- a resubscribe of 1,000 URLs and a ping sent in one write, answers read;
- 200 readers that never read (receive buffer 4 KiB), subscribed to one
  collection, and 8 MB of updates: the gateway's RSS growth at the peak, so the
  memory the queues hold, with frames shared between them.
"""

from __future__ import annotations

import json
import os
import sys
import time

import django

# Authorization is not what is measured (and /u/<n>/ names no view).
OPEN = {"AUTHORIZE": "pushy.authorization.allow_all"}


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    django.setup()


def burst(
    redis_url: str, count: int, size: int, tries: int = 3, **settings: object
) -> dict:
    """``count`` updates of ``size`` bytes to 3 fast readers, ``tries`` times."""
    from tests.gateway.clients import Client
    from tests.gateway.test_slow_clients import publish_burst
    from tests.support.gateway import Gateway

    delivered, closes, seconds = [], [], []
    for _ in range(tries):
        with Gateway(redis_url, pushy_settings={**OPEN, **settings}) as gw:
            clients = [Client(gw.ws_url, timeout=10) for _ in range(3)]
            for client in clients:
                client.subscribe("/api/shot/")
            started = time.monotonic()
            publish_burst(redis_url, count, size)
            for client in clients:
                got = 0
                try:
                    while got < count:
                        got += client.recv().get("type") == "update"
                except Exception:  # closed (4008) or timed out: count what came
                    pass
                delivered.append(got)
            seconds.append(round(time.monotonic() - started, 3))
            closes.append(gw.get_json("/stats")["slow_closes"])
            for client in clients:
                client.close()
    return {
        "updates": count,
        "bytes_each": size,
        "delivered_per_reader": delivered,
        "slow_closes": closes,
        "seconds": seconds,
    }


def resubscribe(redis_url: str, urls: int = 1000) -> dict:
    from tests.gateway.clients import RawClient, frame
    from tests.support.gateway import Gateway

    with Gateway(redis_url, pushy_settings=OPEN) as gw:
        raw = RawClient("127.0.0.1", gw.port, timeout=10)
        raw.upgrade()
        body = b"".join(
            frame(0x1, json.dumps({"action": "subscribe", "url": f"/u/{i}/"}).encode())
            for i in range(urls)
        )
        raw.send(body + frame(0x1, b'{"action": "ping"}'))
        answers = 0
        try:
            while answers < urls + 1:
                raw.recv_json()
                answers += 1
        except Exception:
            pass
        raw.close()
        return {"urls": urls, "answers": answers, **_closes(gw)}


def stuck_memory(redis_url: str, readers: int = 200) -> dict:
    """RSS growth while ``readers`` stuck clients hold 2,000 updates of 4 KB."""
    import psutil

    from tests.gateway.test_slow_clients import publish_many, stuck_client
    from tests.support.gateway import Gateway

    with Gateway(redis_url, pushy_settings=OPEN) as gw:
        process = psutil.Process(gw.pid)
        stuck = [stuck_client(gw) for _ in range(readers)]
        before = process.memory_info().rss
        publish_many(redis_url, 1, 2000)
        peak, deadline = before, time.monotonic() + 3
        while time.monotonic() < deadline:
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.05)
        result = {
            "readers": readers,
            "published_mb": round(2000 * 4100 / 1e6, 1),
            "rss_growth_mb": round((peak - before) / 1e6, 1),
            **_closes(gw),
        }
        for client in stuck:
            client.close()
        return result


def _closes(gw) -> dict:
    stats = gw.get_json("/stats")
    return {k: v for k, v in stats.items() if k.startswith("slow_closes")}


def main() -> None:
    _setup()
    from tests.support.servers import RedisServer

    redis = RedisServer().start()
    try:
        results = {
            "burst_30x60KB": burst(redis.url, 30, 60_000),
            "burst_200x64KiB": burst(redis.url, 200, 64 * 1024),
            # Over SEND_QUEUE_BYTES (1 MiB): possible where a site raised
            # MAX_UPDATE_BYTES, which the gateway enforces too.
            "one_update_2.5MB": burst(
                redis.url, 1, 2_500_000, MAX_UPDATE_BYTES=4 << 20
            ),
            "resubscribe_1000": resubscribe(redis.url),
            "stuck_200_readers": stuck_memory(redis.url),
        }
    finally:
        redis.stop()
    json.dump(results, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
