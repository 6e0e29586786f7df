"""Clients that do not keep up are closed (4008) and never hold others back."""

import json
import threading
import time

import psutil
import pytest
import redis

from tests.gateway.clients import Client, RawClient, frame, publish, shot_update
from tests.support.gateway import Gateway

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]

ALLOW_ALL = "pushy.authorization.allow_all"
PAD = "p" * 4000  # ~4 KB per update: 2,000 of them overflow any socket buffer


def publish_many(redis_url: str, first: int, count: int) -> int:
    """Publish updates for pks first..first+count-1 in one pipeline; the last pk."""
    client = redis.Redis.from_url(redis_url)
    pipe = client.pipeline(transaction=False)
    for pk in range(first, first + count):
        update = shot_update(pk, pad=PAD)
        pipe.publish(update.channel, update.encode())
    pipe.execute()
    client.close()
    return first + count - 1


def wait_for(predicate, timeout: float = 10, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not met in time")


def stuck_client(gateway: Gateway, rcvbuf: int = 4096) -> RawClient:
    """Subscribed to every shot, with a tiny receive buffer, and never reads."""
    raw = RawClient("127.0.0.1", gateway.port, rcvbuf=rcvbuf)
    raw.upgrade()
    raw.send(_subscribe_frame("/api/shot/"))
    assert raw.recv_json()["type"] == "subscribed"
    return raw


def _subscribe_frame(url: str) -> bytes:
    return frame(0x1, json.dumps({"action": "subscribe", "url": url}).encode())


def test_a_client_that_never_reads_does_not_slow_the_others(pushy_redis):
    with Gateway(pushy_redis.url, pushy_settings={"WRITE_TIMEOUT": 2}) as gw:
        process = psutil.Process(gw.pid)
        rss_before = process.memory_info().rss
        stuck = stuck_client(gw)
        fast = Client(gw.ws_url, timeout=10)
        fast.subscribe("/api/shot/")
        # 2,000 updates (8 MB) flow in batches; after each, the fast client must
        # get the batch's last update promptly, whatever the stuck one does.
        slowest = 0.0
        for first in range(1, 2001, 100):
            started = time.monotonic()
            last = publish_many(pushy_redis.url, first, 100)
            message = fast.recv_until(lambda m, last=last: m.get("pk") == last)
            slowest = max(slowest, time.monotonic() - started)
        assert message["data"] == {"pad": PAD}
        assert slowest < 3, f"the fast client waited {slowest:.1f}s for a batch"
        grown = process.memory_info().rss - rss_before
        assert grown < 100 * 1024 * 1024, f"gateway grew by {grown >> 20} MiB"
        # The stuck client is cut off and counted; the fast one is still served.
        wait_for(lambda: gw.get_json("/stats")["slow_closes"] == 1)
        wait_for(lambda: gw.get_json("/stats")["connections"] == 1)
        assert fast.request(action="ping") == {"type": "pong"}
        stuck.close()
        fast.close()


@pytest.mark.parametrize(
    "limit", [{"SEND_QUEUE_SIZE": 20}, {"SEND_QUEUE_BYTES": 50_000}], ids=str
)
def test_a_backlog_that_keeps_growing_past_the_bound_closes_with_4008(
    pushy_redis, limit
):
    # allow_all: 2,000 distinct objects would otherwise wait on 2,000 view runs.
    settings = {**limit, "WRITE_TIMEOUT": 30, "AUTHORIZE": ALLOW_ALL}
    with Gateway(pushy_redis.url, pushy_settings=settings) as gw:
        stuck = stuck_client(gw)
        # 8 MB: more than the kernel's buffers and then the queue hold...
        last = publish_many(pushy_redis.url, 1, 2000)
        # ...and more keeps coming: past the bound for a second, it is too slow
        # (long before WRITE_TIMEOUT).
        started = time.monotonic()
        while gw.get_json("/stats")["slow_closes"] == 0:
            assert time.monotonic() - started < 10, "not closed in time"
            last = publish_many(pushy_redis.url, last + 1, 5)
            time.sleep(0.1)
        # Reading now drains what was in flight, then the close frame.
        assert stuck.recv_close() == (4008, "too slow")
        assert stuck.at_eof()
        stuck.close()
        stats = wait_for(lambda: (s := gw.get_json("/stats"))["connections"] == 0 and s)
        assert stats["subscriptions"] == 0
        assert stats["slow_closes"] == stats["slow_closes_backlog"] == 1
        assert stats["slow_closes_stalled"] == 0
        gw.wait_for_log("closing a slow client (backlog: ")


def test_a_stalled_write_past_write_timeout_drops_the_client(pushy_redis):
    # Queues big enough never to overflow here: only the write deadline can act.
    roomy = {"SEND_QUEUE_SIZE": 100_000, "SEND_QUEUE_BYTES": 1 << 30}
    with Gateway(pushy_redis.url, pushy_settings={**roomy, "WRITE_TIMEOUT": 1}) as gw:
        stuck = stuck_client(gw)
        publish_many(pushy_redis.url, 1, 3000)  # 12 MB: more than the kernel holds
        stats = wait_for(lambda: (s := gw.get_json("/stats"))["connections"] == 0 and s)
        assert stats["slow_closes"] == stats["slow_closes_stalled"] == 1
        gw.wait_for_log("closing a slow client (stalled: ")
        assert stuck.at_eof()
        stuck.close()


def test_an_update_bigger_than_64_kib_is_delivered(pushy_redis, shared_gateway):
    client = Client(shared_gateway.ws_url)
    client.subscribe("/api/shot/77/")
    big = "b" * 100_000
    update = shot_update(77, text=big)
    publish(pushy_redis.url, update)
    assert client.recv()["data"] == {"text": big}
    client.close()


def publish_burst(redis_url: str, count: int, size: int) -> None:
    """``count`` updates of about ``size`` bytes each, in one pipeline."""
    pad = "x" * size
    client = redis.Redis.from_url(redis_url)
    pipe = client.pipeline(transaction=False)
    for pk in range(1, count + 1):
        update = shot_update(pk, pad=pad)
        pipe.publish(update.channel, update.encode())
    pipe.execute()
    client.close()


def test_a_burst_of_200_updates_of_64_kib_reaches_a_fast_reader(pushy_redis):
    with Gateway(pushy_redis.url, pushy_settings={"AUTHORIZE": ALLOW_ALL}) as gw:
        client = Client(gw.ws_url, timeout=20)
        client.subscribe("/api/shot/")
        publish_burst(pushy_redis.url, 200, 64 * 1024)
        pks = [client.recv()["pk"] for _ in range(200)]
        assert pks == list(range(1, 201))
        assert gw.get_json("/stats")["slow_closes"] == 0
        client.close()


def test_an_update_bigger_than_the_send_queue_reaches_a_fast_reader(pushy_redis):
    settings = {"SEND_QUEUE_BYTES": 100_000, "AUTHORIZE": ALLOW_ALL}
    with Gateway(pushy_redis.url, pushy_settings=settings) as gw:
        clients = [Client(gw.ws_url, timeout=20) for _ in range(3)]
        for client in clients:
            client.subscribe("/api/shot/")
        publish_burst(pushy_redis.url, 2, 300_000)
        for client in clients:
            assert [client.recv()["pk"] for _ in range(2)] == [1, 2]
            client.close()
        assert gw.get_json("/stats")["slow_closes"] == 0


def test_resubscribing_1000_urls_at_once_is_answered_in_full(pushy_redis):
    with Gateway(pushy_redis.url, pushy_settings={"AUTHORIZE": ALLOW_ALL}) as gw:
        raw = RawClient("127.0.0.1", gw.port, timeout=20)
        raw.upgrade()
        urls = [f"/api/shot/{pk}/" for pk in range(1000)]
        # Back to back in one write, as a browser's pushy.js sends them after a
        # reconnect (with its heartbeat ping): the gateway reads them all before
        # its writer runs.
        ping = frame(0x1, b'{"action": "ping"}')
        raw.send(b"".join(_subscribe_frame(url) for url in urls) + ping)
        answers = [raw.recv_json() for _ in range(len(urls) + 1)]
        expected = [{"type": "subscribed", "url": url} for url in urls]
        assert answers == [*expected, {"type": "pong"}]
        assert gw.get_json("/stats")["subscriptions"] == 1000
        raw.close()


def read_slowly(raw: RawClient, chunk: int, every: float) -> threading.Thread:
    """Read ``chunk`` bytes every ``every`` seconds until the gateway closes."""
    raw.received = 0

    def run() -> None:
        raw.sock.settimeout(30)
        try:
            while data := raw.sock.recv(chunk):
                raw.received += len(data)
                time.sleep(every)
        except OSError:
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_reader_that_falls_further_behind_is_closed_by_the_backlog_rule(
    pushy_redis,
):
    # WRITE_TIMEOUT is out of reach: the reader makes progress all along.
    settings = {"SEND_QUEUE_BYTES": 50_000, "WRITE_TIMEOUT": 30, "AUTHORIZE": ALLOW_ALL}
    with Gateway(pushy_redis.url, pushy_settings=settings) as gw:
        raw = stuck_client(gw)
        reader = read_slowly(raw, 1024, 0.02)  # about 50 KB/s
        started, last = time.monotonic(), 0
        while gw.get_json("/stats")["slow_closes"] == 0:  # about 1.6 MB/s
            assert time.monotonic() - started < 15, "not closed in time"
            last = publish_many(pushy_redis.url, last + 1, 20)
            time.sleep(0.05)
        reader.join(10)
        stats = gw.get_json("/stats")
        assert stats["slow_closes_backlog"] == 1
        assert stats["slow_closes_stalled"] == 0
        assert raw.received > 20_000  # it was reading, only too slowly
        raw.close()


def test_a_slow_reader_that_keeps_reading_is_not_cut_off_in_a_big_frame(pushy_redis):
    # The kernel calls the gateway's socket writable only after 1 MB or more
    # has drained, which takes this reader longer than WRITE_TIMEOUT; it keeps
    # reading all along, so it must not count as stalled.
    settings = {"WRITE_TIMEOUT": 2, "AUTHORIZE": ALLOW_ALL}
    with Gateway(pushy_redis.url, pushy_settings=settings) as gw:
        raw = stuck_client(gw, rcvbuf=64 * 1024)
        publish_burst(pushy_redis.url, 6, 900_000)
        reader = read_slowly(raw, 24 * 1024, 0.05)  # about 480 KB/s
        deadline = time.monotonic() + 40
        while raw.received < 6 * 900_000:
            assert time.monotonic() < deadline, f"{raw.received} bytes read"
            assert reader.is_alive(), f"closed after {raw.received} bytes {gw.output()}"
            time.sleep(0.1)
        assert gw.get_json("/stats")["slow_closes"] == 0
        raw.close()
