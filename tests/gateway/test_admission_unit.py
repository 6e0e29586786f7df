"""Unit tests of the connection limits' parts: addresses, proxies, counting, logs.

The gateway tests (test_connection_limits.py) run the same rules in a real
runpushy; these pin the edge cases that would take too many processes there.
"""

import ipaddress
from types import SimpleNamespace

import pytest

from pushy.gateway.admission import (
    RETRY_AFTER,
    Admission,
    TrustedProxies,
    client_key,
    default_max_connections,
    parse_address,
    reserve,
)
from pushy.gateway.handshake import Refusal
from pushy.gateway.origins import origin_allowed

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("203.0.113.5", "203.0.113.5"),
        (" 203.0.113.5 ", "203.0.113.5"),
        ("203.0.113.5:4711", "203.0.113.5"),
        ("2001:db8::7", "2001:db8::7"),
        ("[2001:db8::7]:443", "2001:db8::7"),
        ("::ffff:198.51.100.1", "198.51.100.1"),
        ("unknown", None),
        ("", None),
        ("203.0.113.500", None),
        ("_hidden", None),
    ],
)
def test_parse_address(text, expected):
    address = parse_address(text)
    assert (str(address) if address else None) == expected


def test_ipv6_clients_count_per_64_and_ipv4_per_address():
    assert (
        client_key(ipaddress.ip_address("2001:db8:1:2:aaaa::1")) == "2001:db8:1:2::/64"
    )
    same_host = ipaddress.ip_address("2001:db8:1:2:ffff::9")
    assert client_key(same_host) == "2001:db8:1:2::/64"
    assert client_key(ipaddress.ip_address("203.0.113.5")) == "203.0.113.5"
    assert client_key(None) is None


def environ(remote="127.0.0.1", xff=None, real_ip=None):
    env = {}
    if remote is not None:
        env["REMOTE_ADDR"] = remote
    if xff is not None:
        env["HTTP_X_FORWARDED_FOR"] = xff
    if real_ip is not None:
        env["HTTP_X_REAL_IP"] = real_ip
    return env


def client(proxies, **kwargs):
    address = TrustedProxies(proxies).client(environ(**kwargs))
    return str(address) if address else None


def test_headers_of_an_untrusted_peer_are_ignored():
    spoofed = {"xff": "198.51.100.1", "real_ip": "198.51.100.2"}
    assert client([], remote="203.0.113.9", **spoofed) == "203.0.113.9"
    assert client(["10.0.0.0/8"], remote="203.0.113.9", **spoofed) == "203.0.113.9"


def test_right_most_untrusted_forwarded_address_is_the_client():
    proxies = ["127.0.0.1", "10.0.0.0/8"]
    # The client wrote the left entry itself; the proxy appended what it saw.
    assert client(proxies, xff="1.1.1.1, 203.0.113.5") == "203.0.113.5"
    # A chain of our own proxies is skipped.
    assert client(proxies, xff="1.1.1.1, 203.0.113.5, 10.1.2.3") == "203.0.113.5"
    # Repeated headers arrive joined with commas.
    assert client(proxies, xff="1.1.1.1,203.0.113.5,") == "203.0.113.5"
    # Only proxies of ours: the first one is the client.
    assert client(proxies, xff="10.9.9.9, 10.1.2.3") == "10.9.9.9"
    # Garbage where a trusted proxy should have written: count the proxy.
    assert client(proxies, xff="203.0.113.5, garbage") == "127.0.0.1"


def test_x_real_ip_only_without_x_forwarded_for():
    proxies = ["127.0.0.1"]
    assert client(proxies, real_ip="203.0.113.5") == "203.0.113.5"
    assert client(proxies, xff="203.0.113.6", real_ip="203.0.113.5") == "203.0.113.6"
    assert client(proxies, real_ip="nonsense") == "127.0.0.1"
    assert client(proxies) == "127.0.0.1"


def test_unix_socket_peers():
    # A Unix-socket peer has no address: no per-client count unless trusted.
    assert client([], remote=None, xff="203.0.113.5") is None
    assert client(["unix"], remote=None, xff="203.0.113.5") == "203.0.113.5"
    assert client(["unix"], remote="203.0.113.9", xff="1.2.3.4") == "203.0.113.9"


@pytest.mark.parametrize(
    "limit, expected", [(1024, 822), (65536, 58883), (256, 131), (100, 50), (1, 1)]
)
def test_default_max_connections_keeps_a_reserve(limit, expected):
    assert default_max_connections(limit) == expected
    assert limit - expected >= min(reserve(limit), limit // 2)


def test_no_finite_limit_means_no_default_limit():
    assert default_max_connections(None) is None


def counters():
    return SimpleNamespace(refused_max_connections=0, refused_per_client=0)


def test_admission_counts_per_client_and_releases():
    stats = counters()
    admission = Admission(stats, 3, 2, TrustedProxies([]))
    a = environ(remote="203.0.113.1")
    keys = [admission.admit(a), admission.admit(a)]
    with pytest.raises(Refusal) as refused:
        admission.admit(a)
    assert refused.value.status == "503 Service Unavailable"
    assert ("Retry-After", str(RETRY_AFTER)) in refused.value.headers
    assert stats.refused_per_client == 1
    other = admission.admit(environ(remote="203.0.113.2"))
    with pytest.raises(Refusal):  # the process limit, whoever asks
        admission.admit(environ(remote="203.0.113.3"))
    assert stats.refused_max_connections == 1
    admission.release(keys.pop())
    assert admission.by_client == {"203.0.113.1": 1, "203.0.113.2": 1}
    admission.admit(a)
    for key in [*keys, other, "203.0.113.1"]:
        admission.release(key)
    assert admission.open == 0
    assert admission.by_client == {}


def test_no_per_client_limit_keeps_no_table():
    admission = Admission(counters(), None, None, TrustedProxies([]))
    keys = [admission.admit(environ()) for _ in range(5000)]
    assert admission.open == 5000
    assert admission.by_client == {}
    for key in keys:
        admission.release(key)
    assert admission.open == 0


@pytest.mark.parametrize(
    "origin, allowed",
    [
        ("https://example.com", True),
        ("http://example.com:8000", True),
        ("HTTPS://EXAMPLE.COM", True),
        ("file://example.com", False),
        ("null", False),
        ("chrome-extension://example.com", False),
        ("ws://example.com", False),
        ("https://evil.example", False),
        ("https://", False),
        (None, True),  # not a browser
    ],
)
def test_only_http_and_https_origins_count(origin, allowed):
    assert origin_allowed(origin, ["example.com"]) is allowed


def test_the_soft_open_file_limit_is_raised_to_the_hard_one(monkeypatch):
    from pushy.gateway import admission

    calls = []

    class FakeResource:
        RLIMIT_NOFILE = 7
        RLIM_INFINITY = -1

        def __init__(self, soft, hard, maximum):
            self.limits = (soft, hard)
            self.maximum = maximum

        def getrlimit(self, which):
            return self.limits

        def setrlimit(self, which, limits):
            calls.append(limits)
            if limits[0] > self.maximum:
                raise ValueError("not allowed")
            self.limits = limits

    # A finite hard limit: taken as it is.
    monkeypatch.setattr(admission, "resource", FakeResource(1024, 524288, 10**6))
    assert admission.raise_open_file_limit() == 524288
    assert calls == [(524288, 524288)]
    # Already there: nothing to do.
    calls.clear()
    assert admission.raise_open_file_limit() == 524288
    assert calls == []
    # An unlimited hard limit under a kernel maximum of 10,240 (macOS).
    monkeypatch.setattr(admission, "resource", FakeResource(256, -1, 10240))
    assert admission.raise_open_file_limit() == 10240
    assert calls == [(65536, -1), (10240, -1)]
