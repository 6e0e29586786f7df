"""Connection limits in a real runpushy: per process, per client address, via proxies.

Loopback has all of 127.0.0.0/8, so a socket bound to 127.0.0.2 before it
connects is a genuinely different client address from 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.gateway.clients import RawClient, handshake_request, publish, shot_update
from tests.support.gateway import Gateway
from tests.support.nginx import Nginx
from tests.support.servers import free_port

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

RETRY_AFTER = "retry-after: 10"

# Sets RLIMIT_NOFILE (soft, hard), then becomes the given command.
_WITH_NOFILE = (
    "import os, resource, sys; "
    "resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), int(sys.argv[2]))); "
    "os.execv(sys.argv[3], sys.argv[3:])"
)


class LimitedGateway(Gateway):
    """A gateway started under an open-file limit (soft, hard)."""

    def __init__(self, *args, nofile: tuple[int, int], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.nofile = nofile

    def command(self) -> list[str]:
        soft, hard = self.nofile
        return [sys.executable, "-c", _WITH_NOFILE, str(soft), str(hard)] + (
            super().command()
        )


def handshake(gw: Gateway | Nginx, source: str = "127.0.0.1", **headers: str):
    """Upgrade from ``source``: (status, lower-cased response head, client)."""
    raw = RawClient("127.0.0.1", gw.port, source=source)
    path = "/pushy/ws" if isinstance(gw, Nginx) else "/ws"
    head = raw.upgrade(path=path, **headers)
    return head.split(" ", 2)[1], head.lower(), raw


def refused(gw: Gateway | Nginx, source: str = "127.0.0.1", **headers: str) -> bool:
    """Whether a handshake gets 503 with Retry-After (the socket is closed after)."""
    status, head, raw = handshake(gw, source, **headers)
    raw.close()
    assert status in ("101", "503"), head
    if status == "503":
        assert RETRY_AFTER in head, head
    return status == "503"


def admitted(
    gw: Gateway | Nginx, source: str = "127.0.0.1", **headers: str
) -> RawClient:
    status, head, raw = handshake(gw, source, **headers)
    assert status == "101", head
    return raw


def subscribe(raw: RawClient, url: str) -> None:
    raw.send_json(action="subscribe", url=url)
    assert raw.recv_json() == {"type": "subscribed", "url": url}


def close_all(clients: list[RawClient]) -> None:
    for raw in clients:
        raw.close()


def test_one_address_is_refused_past_its_limit_while_another_connects(pushy_redis):
    limit, attempts = 50, 10_000
    settings = {"MAX_CONNECTIONS_PER_CLIENT": limit}
    with Gateway(pushy_redis.url, pushy_settings=settings) as gw:
        assert f"(per client {limit})" in gw.startup_output
        held = [admitted(gw) for _ in range(limit)]
        try:
            started = time.monotonic()
            with ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(lambda _: refused(gw), range(attempts - limit)))
            elapsed = time.monotonic() - started
            assert all(answers), answers.count(False)

            other = admitted(gw, source="127.0.0.2")
            held.append(other)
            subscribe(other, "/api/shot/1/")
            subscribe(held[0], "/api/shot/1/")
            publish(pushy_redis.url, shot_update(1))
            for raw in (other, held[0]):
                assert raw.recv_json()["url"] == "/api/shot/1/"

            stats = gw.get_json("/stats")
            assert stats["refused_per_client"] == attempts - limit
            assert stats["connections"] == limit + 1
            # Thousands of refusals, one log line (at most one a minute).
            assert gw.output().count("MAX_CONNECTIONS_PER_CLIENT is") == 1
            print(f"{attempts - limit} refused handshakes in {elapsed:.1f}s")

            # A place freed is a place taken again.
            held.pop(1).close()
            deadline = time.monotonic() + 5
            while refused(gw):
                assert time.monotonic() < deadline, "the closed place never came back"
        finally:
            close_all(held)


def test_max_connections_refuses_with_503_while_health_answers(pushy_redis):
    settings = {"MAX_CONNECTIONS": 20, "MAX_CONNECTIONS_PER_CLIENT": None}
    with Gateway(pushy_redis.url, pushy_settings=settings) as gw:
        held = [admitted(gw) for _ in range(20)]
        try:
            assert refused(gw)
            assert refused(gw, source="127.0.0.2")  # whoever asks
            assert gw.get("/health")[0] == 200
            status, metrics = gw.get("/metrics")
            assert status == 200
            assert "pushy_gateway_max_connections 20\n" in metrics
            assert "pushy_gateway_refused_max_connections_total 2\n" in metrics
            assert "pushy_gateway_connections 20\n" in metrics
            assert gw.output().count("MAX_CONNECTIONS is 20") == 1
        finally:
            close_all(held)


def test_default_max_connections_keeps_descriptors_for_health(pushy_redis):
    # Soft 128 under hard 256: the gateway raises the soft limit to 256, so
    # MAX_CONNECTIONS is 256 - (100 + 25) = 131.
    settings = {"MAX_CONNECTIONS_PER_CLIENT": None, "HANDSHAKE_TIMEOUT": 30}
    with LimitedGateway(
        pushy_redis.url, pushy_settings=settings, nofile=(128, 256)
    ) as gw:
        assert "max connections 131 " in gw.startup_output, gw.startup_output
        held = [admitted(gw) for _ in range(131)]
        idle = []
        try:
            # Sockets that never send a request hold descriptors too, until
            # HANDSHAKE_TIMEOUT: the reserve absorbs a burst of them.
            for _ in range(40):
                idle.append(RawClient("127.0.0.1", gw.port))
            assert refused(gw)
            assert gw.get("/health")[0] == 200
            status, metrics = gw.get("/metrics")
            assert status == 200
            assert "pushy_gateway_connections 131\n" in metrics
            assert "pushy_gateway_refused_max_connections_total 1\n" in metrics
        finally:
            close_all(held + idle)
        assert "Traceback" not in gw.output()


def test_out_of_descriptors_pauses_accepting_and_logs_once(pushy_redis):
    # MAX_CONNECTIONS above what the open-file limit allows: accept() fails
    # with EMFILE, which must pause accepting, not print a traceback a second.
    settings = {"MAX_CONNECTIONS": 1000, "MAX_CONNECTIONS_PER_CLIENT": None}
    with LimitedGateway(
        pushy_redis.url, pushy_settings=settings, nofile=(64, 64)
    ) as gw:
        assert "leaves fewer than 106 of the 64 open files" in gw.startup_output
        clients = []
        try:
            for _ in range(80):
                # Silent until HANDSHAKE_TIMEOUT: each holds a descriptor.
                clients.append(RawClient("127.0.0.1", gw.port))
            gw.wait_for_log("cannot accept connections")
            # Out of descriptors for a while: the paused accept loop retries
            # several times (0.05 s, doubling to 1 s) and still logs once.
            time.sleep(1.0)
        finally:
            close_all(clients)
        deadline = time.monotonic() + 10
        while True:
            try:
                status, metrics = gw.get("/metrics", timeout=1)
                break
            except OSError:  # Still busy with the backlog of closed clients.
                assert time.monotonic() < deadline
        assert status == 200
        (pauses,) = re.findall(
            r"^pushy_gateway_accept_pauses_total (\d+)$", metrics, re.M
        )
        pauses = int(pauses)
        assert pauses >= 3, metrics
        output = gw.output()
        assert output.count("cannot accept connections") == 1, output
        assert "Traceback" not in output, output
        # Out of descriptors, the gateway may have failed to reach Redis for its
        # version probe (/health 503 then); once they are back, so is /health.
        gw.wait_for_health(200, timeout=5)


def test_forwarded_addresses_count_only_from_trusted_proxies(pushy_redis):
    settings = {"TRUSTED_PROXIES": ["127.0.0.1"], "MAX_CONNECTIONS_PER_CLIENT": 2}
    with Gateway(pushy_redis.url, pushy_settings=settings) as gw:
        held = []
        try:
            # From the trusted proxy: each forwarded client has its own count.
            for client in ("203.0.113.5", "203.0.113.6"):
                held += [admitted(gw, X_Forwarded_For=client) for _ in range(2)]
                assert refused(gw, X_Forwarded_For=client)
            # Only the right-most untrusted entry counts: the left is the client's.
            assert refused(gw, X_Forwarded_For="198.51.100.1, 203.0.113.5")
            held.append(admitted(gw, X_Forwarded_For="203.0.113.5, 198.51.100.1"))
            # X-Real-IP, when there is no X-Forwarded-For.
            held += [admitted(gw, X_Real_IP="203.0.113.7") for _ in range(2)]
            assert refused(gw, X_Real_IP="203.0.113.7")

            # From an untrusted peer the headers are ignored: spoofing a fresh
            # address on every handshake does not get past the peer's limit.
            untrusted = "127.0.0.2"
            for n in range(2):
                spoofed = {
                    "X_Forwarded_For": f"192.0.2.{n}",
                    "X_Real_IP": f"192.0.2.{n}",
                }
                held.append(admitted(gw, untrusted, **spoofed))
            assert refused(gw, untrusted, X_Forwarded_For="192.0.2.9")
            assert refused(gw, untrusted, X_Real_IP="192.0.2.9")
            assert gw.get_json("/stats")["refused_per_client"] == 6
        finally:
            close_all(held)


def test_behind_the_documented_nginx_each_client_counts_alone(pushy_redis):
    # docs/deployment.md: the gateways behind nginx on the same host.
    settings = {"TRUSTED_PROXIES": ["127.0.0.1"], "MAX_CONNECTIONS_PER_CLIENT": 2}
    with (
        Gateway(pushy_redis.url, pushy_settings=settings) as gw,
        Nginx([gw.port], site_port=free_port()) as nginx,
    ):
        held = []
        try:
            # nginx appends the address it saw: the one the client sends is
            # kept on the left, where it is ignored.
            for n in range(2):
                held.append(
                    admitted(nginx, "127.0.0.2", X_Forwarded_For=f"192.0.2.{n}")
                )
            assert refused(nginx, "127.0.0.2", X_Forwarded_For="192.0.2.9")
            assert refused(nginx, "127.0.0.2", X_Real_IP="192.0.2.9")
            # Another browser behind the same proxy has its own count.
            held.append(admitted(nginx, "127.0.0.3"))
            subscribe(held[-1], "/api/shot/4/")
            publish(pushy_redis.url, shot_update(4))
            assert held[-1].recv_json()["pk"] == 4
            assert gw.get_json("/stats")["refused_per_client"] == 2
        finally:
            close_all(held)


def unix_handshake(path: str, **headers: str) -> tuple[str, socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(path)
    sock.sendall(handshake_request(**headers))
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, head
        head += chunk
    return head.split(b" ", 2)[1].decode(), sock


@pytest.mark.parametrize("trusted", [[], ["unix"]])
def test_unix_socket_peers_count_only_when_trusted(pushy_redis, trusted):
    path = os.path.join(tempfile.mkdtemp(prefix="pushy-unix-"), "gw.sock")
    settings = {"TRUSTED_PROXIES": trusted, "MAX_CONNECTIONS_PER_CLIENT": 1}
    with Gateway(pushy_redis.url, unix_socket=path, pushy_settings=settings):
        held = []
        try:
            # A Unix-socket peer has no address: without headers, no count.
            for _ in range(3):
                status, sock = unix_handshake(path)
                held.append(sock)
                assert status == "101"
            status, sock = unix_handshake(path, X_Forwarded_For="203.0.113.5")
            held.append(sock)
            assert status == "101"
            status, sock = unix_handshake(path, X_Forwarded_For="203.0.113.5")
            held.append(sock)
            # Trusted ("unix"): the forwarded address counts; else it is ignored.
            assert status == ("503" if trusted else "101")
        finally:
            for sock in held:
                sock.close()
    shutil.rmtree(os.path.dirname(path), ignore_errors=True)
