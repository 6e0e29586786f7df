"""``runpushy --workers N``: N gateway processes on one port, supervised."""

import os
import re
import signal
import time

import pytest
import websocket

from tests.gateway.clients import Client, publish, shot_update
from tests.support.gateway import READY_MARKER, Gateway

pytestmark = pytest.mark.timeout(90)


class Workers(Gateway):
    """A ``runpushy --workers 2`` supervisor and its workers."""

    count = 2

    def command(self):
        return super().command() + ["--workers", str(self.count)]

    def wait_ready(self, serving: int, timeout: float = 30) -> None:
        """Until ``serving`` start-up lines were logged (workers started so far)."""
        deadline = time.monotonic() + timeout
        while self.output().count(READY_MARKER) < serving:
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.02)

    def worker_pids(self) -> list[int]:
        line = re.search(r"runs \d+ gateway workers: ([\d, ]+)", self.output())
        assert line, self.output()
        return [int(pid) for pid in line.group(1).split(", ")]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); /proc tells whether it is one.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ")[1][0] != "Z"


@pytest.fixture
def workers(pushy_redis):
    supervisor = Workers(pushy_redis.url, pushy_settings={"SHUTDOWN_TIMEOUT": 3})
    with supervisor:
        supervisor.wait_ready(serving=2)
        yield supervisor


def assert_every_client_gets_an_update(redis_url, ws_url, pk, clients=8):
    """New clients land on every worker; all of them get one update."""
    connected = [Client(ws_url) for _ in range(clients)]
    try:
        for client in connected:
            client.subscribe(f"/api/shot/{pk}/")
        # Each worker has its own Redis subscription.
        assert publish(redis_url, shot_update(pk)) == 2
        for client in connected:
            assert client.recv_until(lambda m: m.get("type") == "update")["pk"] == pk
    finally:
        for client in connected:
            client.close()


def test_workers_share_the_port_and_all_deliver(pushy_redis, workers):
    assert_every_client_gets_an_update(pushy_redis.url, workers.ws_url, pk=1)


def test_a_killed_worker_is_replaced(pushy_redis, workers):
    first, second = workers.worker_pids()
    os.kill(first, signal.SIGKILL)
    workers.wait_for_log(f"(pid {first}) exited")
    workers.wait_ready(serving=3)
    assert alive(second)
    # Both worker slots serve again.
    assert_every_client_gets_an_update(pushy_redis.url, workers.ws_url, pk=2)


def test_sigterm_stops_every_worker(workers):
    pids = workers.worker_pids()
    client = websocket.create_connection(workers.ws_url, timeout=10)
    started = time.monotonic()
    workers.signal(signal.SIGTERM)
    # The client's gateway says it is going away.
    opcode = None
    while opcode != websocket.ABNF.OPCODE_CLOSE:
        opcode, frame = client.recv_data_frame(control_frame=True)
    assert int.from_bytes(frame.data[:2], "big") == 1001
    client.close()
    assert workers.wait(timeout=20) == 0
    assert time.monotonic() - started < 3 + 5  # SHUTDOWN_TIMEOUT + the kill margin
    assert not any(alive(pid) for pid in pids)
    workers.wait_for_log("all workers stopped")


def command_line(pid: int) -> str:
    """What ps shows as a process's command line."""
    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        return cmdline.read().replace(b"\0", b" ").decode().strip()


def test_ps_names_the_supervisor_and_its_workers(workers):
    assert command_line(workers.pid) == (
        f"runpushy supervisor of 2 workers 127.0.0.1:{workers.port}"
    )
    titles = sorted(command_line(pid) for pid in workers.worker_pids())
    assert titles == ["runpushy worker 0", "runpushy worker 1"]
