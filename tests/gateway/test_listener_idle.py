"""The listener says when it waits for Redis, so the gateway can tell an update
that arrived alone (written at once) from one of a burst (queued and batched).

A real Redis; the real Listener in a process of its own with gevent's patched
sockets, as in runpushy (tests/gateway/listener_probe.py).
"""

import subprocess
import sys

import pytest
import redis

from tests.gateway.clients import shot_update
from tests.support.servers import stop_process, wait_for_output

pytestmark = pytest.mark.timeout(60)

PATTERN = "pushy-idle-test:*"


@pytest.fixture
def probe(redis_server):
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.gateway.listener_probe", redis_server.url,
         PATTERN],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        wait_for_output(proc, "subscribed", 20)
        # Subscribed is not yet waiting: an update published before the first
        # idle would be read without one in front of it.
        wait_for_output(proc, "idle", 20)
        yield proc
    finally:
        stop_process(proc)


def publish(redis_url: str, pks: range) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        with client.pipeline(transaction=False) as pipe:
            for pk in pks:
                pipe.publish("pushy-idle-test:shot", shot_update(pk).encode())
            pipe.execute()
    finally:
        client.close()


def events_until(proc: subprocess.Popen, pk: int) -> list:
    """What the listener reports up to update ``pk`` and the idle after it."""
    seen = wait_for_output(proc, f"{pk}\n", 20).split()
    seen.append(proc.stdout.readline().strip())
    return [line if line == "idle" else int(line) for line in seen]


def test_an_update_alone_comes_between_idles(redis_server, probe):
    publish(redis_server.url, range(1, 2))
    events = ["idle", *events_until(probe, 1)]  # the fixture saw the first idle
    assert events[-3:] == ["idle", 1, "idle"]


def test_a_burst_in_one_read_has_no_idle_between_its_updates(redis_server, probe):
    publish(redis_server.url, range(1, 51))  # 50 updates in one pipeline
    events = events_until(probe, 50)
    burst = events[events.index(1) :]
    assert [e for e in burst if e != "idle"] == list(range(1, 51))
    # Redis may hand a burst over in more than one read, never one per update.
    assert burst[:-1].count("idle") <= 3
    assert burst[-1] == "idle"
