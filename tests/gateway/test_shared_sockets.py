"""pushy/gateway/shared_sockets.py: a socket made in one thread, waited on in
another, in a fresh monkey-patched interpreter with real threads and sockets.

tests/gateway/test_pool_threads.py runs the same through a real gateway: views
in its pool threads using one ``redis.Redis`` for the whole process.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.timeout(60)

SCRIPT = """
import sys
from gevent import monkey; monkey.patch_all()
from pushy.gateway import shared_sockets
if sys.argv[1] == "installed":
    shared_sockets.install()
import socket, time, gevent
from gevent.threadpool import ThreadPool

pool = ThreadPool(2)
# Made in pool thread 1, as a client library's pooled connection would be.
ours, theirs = pool.apply(socket.socketpair)

def echo(count):
    for _ in range(count):
        theirs.sendall(theirs.recv(100).upper())

def ask(word):
    ours.sendall(word)
    return ours.recv(100)  # waits: the answer comes from another thread

try:
    server = pool.spawn(echo, 30)
    for n in range(10):  # reused by whichever thread asks
        assert pool.apply(ask, (b"w%d" % n,)) == b"W%d" % n
    # In the loop's thread too, and other greenlets run while it waits.
    ticks = []
    ticker = gevent.spawn(lambda: [ticks.append(gevent.sleep(0.001)) for _ in range(5)])
    for n in range(20):
        assert ask(b"x%d" % n) == b"X%d" % n
    ticker.join(5)
    assert len(ticks) == 5
    server.get(timeout=10)
    # A timeout is a timeout, in a thread that did not make the socket.
    ours.settimeout(0.05)
    def times_out():
        started = time.monotonic()
        try:
            ours.recv(1)
        except socket.timeout:
            return time.monotonic() - started
    waited = pool.apply(times_out)
    assert waited is not None and 0.04 < waited < 2, waited
    print("ok")
except Exception as e:
    print(type(e).__name__, e)
"""


def run(mode: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), mode],
        capture_output=True,
        text=True,
        timeout=40,
    )
    return done.stdout.strip() + done.stderr[-2000:]


def test_a_socket_made_in_one_thread_is_waited_on_in_any():
    assert run("installed") == "ok"


def test_without_it_gevent_refuses_the_other_threads():
    # What the gateway's views met before (a pooled connection, another thread).
    assert "Cannot switch to a different thread" in run("plain")
