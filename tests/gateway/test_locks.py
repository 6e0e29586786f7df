"""Cooperative locks (pushy/gateway/locks.py): native locks that the loop's
greenlets wait for without stopping the loop.

The semantics are checked here with real greenlets and real native threads
(gevent's ThreadPool, as the gateway's questions use it); ``install()`` in a
fresh, monkey-patched interpreter, where pool threads and the loop log and
import at once: without it that run stops for good within seconds (gevent
issue 2013), which test_pool_threads.py shows through a real gateway.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import gevent
import pytest
from gevent.threadpool import ThreadPool

from pushy.gateway import locks

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def loop_thread(monkeypatch):
    """This thread is the loop's, as install() would have said."""
    monkeypatch.setattr(locks, "_loop_thread", locks._native_ident())


@pytest.fixture
def pool():
    threads = ThreadPool(2)
    yield threads
    threads.kill()


def test_a_greenlet_waits_for_a_thread_while_the_loop_runs_on(loop_thread, pool):
    lock = locks.CooperativeLock()
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:  # in a native thread
        lock.acquire()
        taken.set()
        release.wait(10)
        lock.release()

    holder = pool.spawn(hold)
    assert taken.wait(10)
    ticks = []

    def tick() -> None:
        for _ in range(20):
            gevent.sleep(0.001)
            ticks.append(1)

    ticker = gevent.spawn(tick)
    waiter = gevent.spawn(lock.acquire)
    ticker.join(5)
    assert len(ticks) == 20  # the loop ran while the waiter waited
    assert not waiter.ready()
    release.set()
    assert waiter.get(timeout=5) is True
    holder.get(timeout=5)
    assert lock.locked()


def test_a_thread_waits_natively_for_a_greenlet(loop_thread, pool):
    lock = locks.CooperativeLock()
    lock.acquire()
    got = pool.spawn(lambda: lock.acquire(True, 10))
    gevent.sleep(0.05)
    assert not got.ready()
    lock.release()
    assert got.get(timeout=5) is True


def test_an_rlock_excludes_other_greenlets_across_a_yield_and_reenters(loop_thread):
    lock = locks.CooperativeRLock()
    order = []

    def first() -> None:
        with lock, lock:  # re-entered by its owner
            order.append("first in")
            gevent.sleep(0.02)  # another greenlet runs meanwhile
            order.append("first out")

    def second() -> None:
        with lock:
            order.append("second in")

    gevent.joinall([gevent.spawn(first), gevent.spawn(second)], timeout=5)
    assert order == ["first in", "first out", "second in"]


def test_timeouts_and_non_blocking(loop_thread, pool):
    lock = locks.CooperativeLock()
    assert lock.acquire(False) is True
    assert lock.acquire(False) is False
    started = time.monotonic()
    assert lock.acquire(True, 0.05) is False  # in the loop: polled
    assert time.monotonic() - started >= 0.05
    assert pool.spawn(lambda: lock.acquire(True, 0.05)).get(timeout=5) is False
    with pytest.raises(ValueError):
        lock.acquire(False, 1)
    lock.release()
    assert not lock.locked()


def test_install_makes_logging_imports_and_new_locks_cooperative(tmp_path):
    """In a fresh monkey-patched interpreter: 4 pool threads and a greenlet
    log to one handler and import the same fresh modules at once, 20 rounds."""
    package = tmp_path / "fresh"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for i in range(80):  # 4 modules a round, each slow to import
        (package / f"m{i}.py").write_text("import time\ntime.sleep(0.002)\n")
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from gevent import monkey; monkey.patch_all()
        from pushy.gateway.locks import install, CooperativeLock, CooperativeRLock
        install()
        import importlib, logging, threading, gevent
        from gevent.threadpool import ThreadPool
        assert type(threading.Lock()) is CooperativeLock
        assert type(threading.RLock()) is CooperativeRLock
        logging.basicConfig(stream=open({str(tmp_path / "log")!r}, "w"))
        log = logging.getLogger("stress")
        assert type(logging.getLogger().handlers[0].lock) is CooperativeRLock

        def work(round, n):
            for i in range(500):
                log.warning("thread %s %s", n, i)
                if i % 100 == 0:
                    importlib.import_module(f"fresh.m{{round * 4 + (i // 100) % 4}}")
            return n

        def loop_logger():
            while True:
                log.warning("loop")
                gevent.sleep(0)

        pool = ThreadPool(4)
        gevent.spawn(loop_logger)
        for round in range(20):
            jobs = [pool.spawn(work, round, n) for n in range(4)]
            with gevent.Timeout(20):
                assert [job.get() for job in jobs] == [0, 1, 2, 3]
        print("done")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=50
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "done"
