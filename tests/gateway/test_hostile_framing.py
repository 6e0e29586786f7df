"""Memory and CPU stay bounded under hostile framing and half-sent heads
(issue 21 item 7), on a real gateway with raw sockets.

- A message may come in at most ``frames.MAX_FRAGMENTS`` frames (past it: 1009),
  a fragmented message holds only its payload bytes, and every frame costs a
  rate-limit token.
- A connection whose head is still arriving counts against its address's
  ``MAX_CONNECTIONS_PER_CLIENT``, and the heads being read together may hold
  ``acceptor.MAX_HEAD_BYTES_READING`` bytes; past either, 503 at once.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from types import SimpleNamespace

import psutil
import pytest

from pushy.gateway.acceptor import MAX_HEAD_BYTES_READING
from pushy.gateway.admission import Admission, TrustedProxies
from pushy.gateway.frames import MAX_FRAGMENTS
from pushy.gateway.handshake import Refusal
from tests.gateway.clients import Client, RawClient, frame
from tests.support.gateway import Gateway

pytestmark = [pytest.mark.timeout(120)]

TEXT, CONT = 0x1, 0x0
MIB = 1024 * 1024
PING = b'{"action": "ping"}'


def rss(process: psutil.Process) -> int:
    return process.memory_info().rss


def ping_time(client: Client) -> float:
    started = time.monotonic()
    assert client.request(action="ping") == {"type": "pong"}
    return time.monotonic() - started


def wait_for(predicate, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


# Fragments ------------------------------------------------------------------


def test_a_message_of_too_many_empty_fragments_closes_with_1009(shared_gateway):
    raw = RawClient("127.0.0.1", shared_gateway.port)
    assert raw.upgrade().startswith("HTTP/1.1 101 ")
    raw.send(frame(TEXT, PING[:5], fin=False))
    raw.send(frame(CONT, b"", fin=False) * (MAX_FRAGMENTS + 100))
    assert raw.recv_close() == (1009, "too many fragments")
    assert raw.at_eof()


def test_a_message_of_many_fragments_below_the_cap_is_accepted(shared_gateway):
    raw = RawClient("127.0.0.1", shared_gateway.port)
    assert raw.upgrade().startswith("HTTP/1.1 101 ")
    raw.send(frame(TEXT, PING[:1], fin=False))
    # One byte per fragment, then empty ones: MAX_FRAGMENTS frames in all.
    pieces = [frame(CONT, PING[i : i + 1], fin=False) for i in range(1, len(PING))]
    pieces += [frame(CONT, b"", fin=False)] * (MAX_FRAGMENTS - len(PING) - 1)
    pieces.append(frame(CONT, b"", fin=True))
    raw.send(b"".join(pieces))
    assert raw.recv_json() == {"type": "pong"}
    raw.close()


def test_endless_empty_continuation_frames_hold_no_memory(pushy_redis):
    """The reproduction: one socket streaming 6-byte empty continuation frames
    of one message grew the gateway by 8 bytes a frame (a list of chunks), and
    slowed every other client. Now it is closed after MAX_FRAGMENTS frames."""
    with Gateway(pushy_redis.url) as gw:
        process = psutil.Process(gw.pid)
        other = Client(gw.ws_url, timeout=10)
        for _ in range(20):
            ping_time(other)  # warm
        before = rss(process)
        raw = RawClient("127.0.0.1", gw.port)
        assert raw.upgrade().startswith("HTTP/1.1 101 ")
        raw.send(frame(TEXT, PING[:5], fin=False))
        chunk = frame(CONT, b"", fin=False) * 10_000
        stop = threading.Event()
        sent = [0]

        def flood() -> None:
            # Up to 2,000,000 frames (12 MB), or until the gateway cuts us off.
            try:
                while not stop.is_set() and sent[0] < 2_000_000:
                    raw.sock.sendall(chunk)
                    sent[0] += 10_000
            except OSError:
                pass

        sender = threading.Thread(target=flood)
        sender.start()
        slowest = 0.0
        started = time.monotonic()
        while sender.is_alive() and time.monotonic() - started < 5:
            slowest = max(slowest, ping_time(other))
        stop.set()
        sender.join(10)
        slowest = max(slowest, ping_time(other))
        grown = rss(process) - before
        # Cut off: the gateway holds only this one other client.
        wait_for(lambda: gw.get_json("/stats")["connections"] == 1)
        assert gw.get_json("/stats")["errors"] >= 1
        assert grown < 4 * MIB, f"gateway grew by {grown / MIB:.1f} MiB"
        assert slowest < 0.2, f"another client's ping took {slowest * 1000:.0f} ms"
        raw.close()
        other.close()


def test_every_frame_costs_a_rate_limit_token(shared_gateway):
    """Four pings of 1,001 frames each: 4,004 tokens at RATE_LIMIT 1,000/s and
    a burst of 1,000 take about 3 s, where four plain pings take none."""
    raw = RawClient("127.0.0.1", shared_gateway.port, timeout=10)
    assert raw.upgrade().startswith("HTTP/1.1 101 ")
    message = frame(TEXT, PING, fin=False)
    message += frame(CONT, b"", fin=False) * 999 + frame(CONT, b"", fin=True)
    other = Client(shared_gateway.ws_url)
    started = time.monotonic()
    raw.send(message * 4)
    slowest = 0.0
    for _ in range(4):
        assert raw.recv_json() == {"type": "pong"}
        slowest = max(slowest, ping_time(other))
    elapsed = time.monotonic() - started
    assert elapsed > 2.0, f"4,004 frames handled in {elapsed:.2f} s"
    assert slowest < 0.2
    raw.close()
    other.close()


# Half-sent heads ------------------------------------------------------------


def test_heads_being_read_count_per_address():
    stats = SimpleNamespace(refused_max_connections=0, refused_per_client=0)
    admission = Admission(stats, None, 2, TrustedProxies(["10.0.0.1"]))
    heads = [admission.hold_head("203.0.113.1") for _ in range(2)]
    assert heads == ["203.0.113.1", "203.0.113.1"]
    with pytest.raises(Refusal) as refused:
        admission.hold_head("203.0.113.1")
    assert refused.value.status == "503 Service Unavailable"
    assert stats.refused_per_client == 1
    # Apart from WebSockets: a request accepted before its first bytes came
    # (a /health too) is not refused because its address holds WebSockets.
    websockets = [admission.admit({"REMOTE_ADDR": "203.0.113.1"}) for _ in range(2)]
    admission.release_head(heads.pop())
    assert admission.hold_head("203.0.113.1") == "203.0.113.1"
    # A trusted proxy's heads and a Unix socket peer's are not counted.
    assert admission.hold_head("10.0.0.1") is None
    assert admission.hold_head("") is None
    assert admission.hold_head("[2001:db8::1]:80") == "2001:db8::/64"
    admission.release_head("2001:db8::/64")
    for key in [*heads, "203.0.113.1"]:
        admission.release_head(key)
    for key in websockets:
        admission.release(key)
    assert admission.heads_by_client == admission.by_client == {}
    assert admission.open == 0


def get_stats(port: int, source: str) -> dict:
    """/stats, asked from ``source``."""
    sock = socket.create_connection(("127.0.0.1", port), 5, (source, 0))
    with sock:
        sock.sendall(b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    return json.loads(body)


HALF_HEAD = b"GET /ws HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (60 * 1024)


def half_sent(port: int, source: str = "127.0.0.1") -> socket.socket:
    """A socket that sent 60 KiB of a head that never ends (or was cut off)."""
    sock = socket.socket()
    sock.bind((source, 0))
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    try:
        sock.sendall(HALF_HEAD)
    except OSError:
        pass  # refused while we were still sending
    return sock


def waiting(sock: socket.socket) -> bool:
    """Whether the gateway is still reading ``sock``'s head: no answer, no close."""
    sock.settimeout(0)
    try:
        sock.recv(4096)
    except BlockingIOError:
        return True
    except ConnectionResetError:
        return False
    return False  # an answer (503) or the end of the connection


def settled_refusals(gw: Gateway, socks: list, timeout: float = 30) -> list:
    """The sockets the gateway stopped reading, once it has read every byte
    sent: the heads it still reads hold all of theirs, the others are refused."""
    deadline = time.monotonic() + timeout
    stopped: list = []
    while True:
        stopped += [sock for sock in socks if sock not in stopped and not waiting(sock)]
        stats = gw.get_json("/stats")
        counted = stats["handshakes_refused"]
        held = (len(socks) - counted) * len(HALF_HEAD)
        if counted == len(stopped) and stats["head_bytes_reading"] == held:
            return stopped
        assert time.monotonic() < deadline, (len(stopped), counted, stats)
        time.sleep(0.1)  # a poll of the gateway's count, with a deadline


def refused(sock: socket.socket) -> bool:
    """Whether the gateway answered ``sock`` 503 or closed it."""
    sock.settimeout(5)
    try:
        answer = sock.recv(4096)
    except ConnectionResetError:
        return True
    return answer == b"" or answer.startswith(b"HTTP/1.1 503 ")


@pytest.mark.slow
def test_half_sent_heads_count_against_the_per_client_limit(pushy_redis):
    limit = 5
    settings = {"MAX_CONNECTIONS_PER_CLIENT": limit, "HANDSHAKE_TIMEOUT": 60}
    with Gateway(pushy_redis.url, pushy_settings=settings) as gw:
        process = psutil.Process(gw.pid)
        before = rss(process)
        held = [half_sent(gw.port) for _ in range(limit)]
        extra = [half_sent(gw.port) for _ in range(300)]
        time.sleep(0.5)
        # The first ones are still being read: the gateway waits for the rest
        # (for HANDSHAKE_TIMEOUT); the others were refused at once.
        assert all(waiting(sock) for sock in held)
        assert not any(waiting(sock) for sock in extra)
        assert all(refused(sock) for sock in extra)
        grown = rss(process) - before
        assert grown < 8 * MIB, f"gateway grew by {grown / MIB:.1f} MiB"
        # (Asked from another address: this one may not have another head
        # read now, and a request may be accepted before its first bytes.)
        assert get_stats(gw.port, "127.0.0.2")["refused_per_client"] == 300
        # Another address connects meanwhile.
        other = RawClient("127.0.0.1", gw.port, source="127.0.0.2")
        assert other.upgrade().startswith("HTTP/1.1 101 ")
        # Gone, the half-sent heads give their places back.
        for sock in held + extra:
            sock.close()

        def admitted() -> bool:
            raw = RawClient("127.0.0.1", gw.port)
            try:
                return raw.upgrade().startswith("HTTP/1.1 101 ")
            finally:
                raw.close()

        wait_for(admitted)
        other.close()


@pytest.mark.slow
def test_heads_being_read_hold_a_bounded_number_of_bytes(pushy_redis):
    settings = {"MAX_CONNECTIONS_PER_CLIENT": None, "HANDSHAKE_TIMEOUT": 60}
    with Gateway(pushy_redis.url, pushy_settings=settings) as gw:
        process = psutil.Process(gw.pid)
        before = rss(process)
        count = MAX_HEAD_BYTES_READING // len(HALF_HEAD) + 100
        socks = [half_sent(gw.port) for _ in range(count)]
        stopped = settled_refusals(gw, socks)
        assert 50 <= len(stopped) <= 150, len(stopped)
        assert all(refused(sock) for sock in stopped)
        grown = rss(process) - before
        bound = MAX_HEAD_BYTES_READING + 16 * MIB
        assert grown < bound, f"gateway grew by {grown / MIB:.1f} MiB"
        # A whole head still gets its answer.
        other = RawClient("127.0.0.1", gw.port, source="127.0.0.2")
        assert other.upgrade().startswith("HTTP/1.1 101 ")
        for sock in socks:
            sock.close()
        other.close()
