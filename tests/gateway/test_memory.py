"""Memory comes back: after 10,000 connections with subscriptions have gone, the
gateway's RSS is close to where it started."""

from __future__ import annotations

import json
import socket
import struct
import time

import psutil
import pytest

from tests.gateway.clients import handshake_request
from tests.support.gateway import Gateway

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

BATCH = 1000  # connections open at once
BATCHES = 10
URLS = 10  # subscriptions per connection, each URL its own, ~1,600 bytes
MiB = 1 << 20


def subscribe_frames(connection: int) -> bytes:
    """The subscribe messages, as client frames with an all-zero mask: masking
    in Python byte by byte (tests.gateway.clients.frame) would be most of the
    test's time, and a zero mask is as valid a mask as any."""
    urls = [f"/api/shot/{connection}/{n}/{'x' * 1580}" for n in range(URLS)]
    frames = []
    for url in urls:
        payload = json.dumps({"action": "subscribe", "url": url}).encode()
        assert 125 < len(payload) < 1 << 16
        head = b"\x81\xfe" + struct.pack("!H", len(payload))
        frames.append(head + bytes(4) + payload)
    return b"".join(frames)


def read_until(sock: socket.socket, done) -> bytes:
    data = b""
    while not done(data):
        chunk = sock.recv(1 << 16)
        assert chunk, f"closed early: {data[:200]!r}"
        data += chunk
    return data


def run_batch(port: int, first: int, measure=lambda: 0, count: int = BATCH) -> int:
    """BATCH connections, each subscribed to URLS URLs (answers read), then gone;
    what ``measure()`` said while they were all open. Each step is done for all
    connections before the next, so the gateway works while the test does."""
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    for sock in socks:
        sock.settimeout(20)
        sock.sendall(handshake_request())
    for sock in socks:
        head = read_until(sock, lambda data: b"\r\n\r\n" in data)
        assert head.startswith(b"HTTP/1.1 101"), head
    for number, sock in enumerate(socks, first):
        sock.sendall(subscribe_frames(number))
    for sock in socks:
        read_until(sock, lambda data: data.count(b'"subscribed"') == URLS)
    measured = measure()
    for sock in socks:
        sock.close()
    return measured


def wait_for_connections(gw: Gateway, count: int) -> None:
    deadline = time.monotonic() + 20
    while gw.get_json("/stats")["connections"] != count:
        assert time.monotonic() < deadline, "connections did not close in time"
        time.sleep(0.05)


def test_rss_returns_close_to_its_baseline_after_10000_connections(pushy_redis):
    # allow_all: the URLs name no view; authorization is not what is measured.
    settings = {"AUTHORIZE": "pushy.authorization.allow_all"}
    with Gateway(pushy_redis.url, pushy_settings=settings) as gw:
        process = psutil.Process(gw.pid)

        def rss() -> int:
            return process.memory_info().rss

        # A few connections warm up the code paths; the baseline is after them.
        run_batch(gw.port, 0, count=10)
        wait_for_connections(gw, 0)
        baseline = rss()
        peak = baseline
        for batch in range(1, BATCHES + 1):
            peak = max(peak, run_batch(gw.port, batch * BATCH, rss))
        wait_for_connections(gw, 0)
        stats = gw.get_json("/stats")
        assert stats["connections_total"] == BATCHES * BATCH + 10
        assert stats["subscriptions"] == 0
        print(f"baseline {baseline / MiB:.1f} MiB, peak +{(peak - baseline) / MiB:.1f}")
        # Poll (with a deadline) until the freed memory has been given back.
        margin = 10 * MiB
        deadline = time.monotonic() + 15
        while (left := rss() - baseline) > margin:
            assert time.monotonic() < deadline, (
                f"RSS still {left / MiB:.1f} MiB above its baseline "
                f"({baseline / MiB:.1f} MiB; peak +{(peak - baseline) / MiB:.1f} MiB)"
            )
            time.sleep(0.2)
        print(f"back to +{left / MiB:.1f} MiB")
        # The test measured something: the connections did cost memory.
        assert peak - baseline > 3 * margin, (peak - baseline) / MiB


def test_trim_is_a_no_op_where_the_c_library_has_no_malloc_trim(monkeypatch):
    from pushy.gateway import memory

    assert memory.trim() is (memory._malloc_trim() is not None)
    monkeypatch.setattr(memory, "_malloc_trim", lambda: None)
    assert memory.trim() is False
    trimmer = memory.Trimmer()
    trimmer.connection_closed()
    trimmer.tick()
    assert (trimmer.closed, trimmer.trims) == (0, 0)


def test_freezing_exempts_what_is_alive_from_the_collector():
    import gc

    from pushy.gateway import memory

    kept = [[] for _ in range(1000)]  # tracked objects alive now
    try:
        frozen = memory.freeze_startup_objects()
        assert frozen >= len(kept)
        assert not any(item is kept for item in gc.get_objects(2))
    finally:
        gc.unfreeze()
