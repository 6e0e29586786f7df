"""The load client's frame counting: the run-at-once fast path against the
frame-by-frame loop, on the same bytes (bench/harness/wsclient.py)."""

import pytest

from bench.harness import wsclient
from pushy.gateway import frames

MARKER = b'"run7 '


def update(title: str, pk: int = 1) -> bytes:
    message = {
        "type": "update", "url": f"/api/item/{pk}/", "event": "update",
        "model": "benchapp.item", "pk": pk, "collection": "/api/item/",
        "data": {"title": title},
    }  # fmt: skip
    return frames.message_frame(message)


def subscribed_client(parse_titles: bool) -> wsclient.Connection:
    tally = wsclient.Tally()
    tally.start(MARKER, parse_titles)
    client = wsclient.Connection(("127.0.0.1", 9), "/ws", "/api/item/", {}, tally)
    client.state = wsclient.SUBSCRIBED
    client.sock.close()  # never connected: only the parser is under test
    return client


def counts(client: wsclient.Connection) -> tuple:
    tally = client.tally
    return (tally.count, tally.stale, client.updates, client.other_frames)


STREAMS = {
    "small frames": [update("run7 1", pk) for pk in range(40)],
    "long frames (16-bit length)": [update("run7 " + "x" * 300, pk) for pk in range(9)],
    "mixed": [
        update("run7 1"),
        update("run6 1"),  # an earlier measurement's: stale
        frames.message_frame({"type": "subscribed", "url": "/api/item/"}),
        update("run7 2", 2),
        frames.build_frame(frames.OP_PING, b"hi"),  # ends the run: the loop answers
        update("run7 3", 3),
        update("run7 " + "y" * 70_000, 4),  # a 64-bit length: the loop's
        update("run7 4", 5),
    ],
}


@pytest.mark.parametrize("name", STREAMS)
@pytest.mark.parametrize("cut", [None, 7, 301])
def test_the_fast_path_counts_what_the_frame_loop_counts(name, cut):
    data = b"".join(STREAMS[name])
    # Titles parsed: the frame-by-frame loop only; not: the fast path first.
    slow, fast = subscribed_client(True), subscribed_client(False)
    slow.send = fast.send = lambda opcode, payload: None  # pongs go nowhere
    chunks = (
        [data] if cut is None else [data[i : i + cut] for i in range(0, len(data), cut)]
    )
    for chunk in chunks:
        for client in (slow, fast):
            client.inbox += chunk
            client._read_frames(1.0)
    assert counts(fast) == counts(slow)
    assert fast.tally.count == sum(MARKER in f for f in STREAMS[name])
    assert fast.inbox == slow.inbox == b""  # every frame taken, none cut short
    assert fast.tally.first == fast.tally.last == 1.0


def subscribing_client() -> tuple[wsclient.Connection, list]:
    client = subscribed_client(False)
    client.state = wsclient.SUBSCRIBING
    sent: list = []
    client.send = lambda opcode, payload: sent.append(payload)
    return client, sent


def answer(client: wsclient.Connection, message: dict, now: float) -> None:
    client.inbox += frames.message_frame(message)
    client._read_frames(now)


def test_a_busy_subscribe_is_asked_again_later_with_a_growing_delay():
    client, sent = subscribing_client()
    busy = {"type": "error", "code": "busy", "message": "try again later"}
    answer(client, busy, now=100.0)
    assert client.state == wsclient.SUBSCRIBING and not sent
    assert not client.retry_if_due(100.1)
    assert client.retry_if_due(100.0 + wsclient.RETRY_DELAY)
    assert sent == [b'{"action": "subscribe", "url": "/api/item/"}']
    answer(client, {**busy, "code": "timeout"}, now=200.0)
    assert not client.retry_if_due(200.0 + wsclient.RETRY_DELAY)
    assert client.retry_if_due(200.0 + 2 * wsclient.RETRY_DELAY)
    answer(client, {"type": "subscribed", "url": "/api/item/"}, now=300.0)
    assert client.state == wsclient.SUBSCRIBED and client.error is None


def test_a_refused_subscribe_fails_the_connection_with_the_gateways_words():
    client, sent = subscribing_client()
    refusal = {"type": "error", "code": "forbidden", "message": "not allowed: 403"}
    answer(client, refusal, now=1.0)
    assert client.state == wsclient.CLOSED
    assert client.error == "subscribe refused: forbidden: not allowed: 403"


def test_busy_past_the_retries_fails_the_connection():
    client, sent = subscribing_client()
    busy = {"type": "error", "code": "busy", "message": "try again later"}
    for attempt in range(wsclient.MAX_RETRIES):
        answer(client, busy, now=float(attempt))
        assert client.retry_if_due(float(attempt) + 1000)
    answer(client, busy, now=10_000.0)
    assert client.state == wsclient.CLOSED and "busy" in client.error
