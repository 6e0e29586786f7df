"""The authorizer's visibility marks: which decisions count for an update, and
which questions are shared (the real Authorizer, its pool, a gated AUTHORIZE)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import gevent
import pytest

from pushy.gateway.permissions import CHANGED, MAYBE, SAME, Authorizer
from pushy.gateway.visitor import Visitor
from tests.testapp import auth

pytestmark = pytest.mark.timeout(90)

URL = "/p/1/"
ROOT = Path(__file__).resolve().parent.parent.parent
ISOLATED = "PUSHY_ISOLATED"


@pytest.fixture
def authorizer(settings):
    settings.PUSHY_SETTINGS = {
        **settings.PUSHY_SETTINGS,
        "AUTHORIZE": "tests.testapp.auth.gated",
        # What is measured here is which questions are shared, not how fast a
        # pool thread starts: on a loaded machine, late in a full run, the
        # first session read once took over the default 5 s.
        "AUTHORIZATION_TIMEOUT": 60,
    }
    auth.ASKED.clear()
    auth.GATE.clear()
    authorizer = Authorizer(pool_size=2, ttl=60)
    yield authorizer
    auth.GATE.set()
    authorizer.close()


def asked_times(n):
    deadline = time.monotonic() + 5
    while len(auth.ASKED) < n:
        assert time.monotonic() < deadline, auth.ASKED
        gevent.sleep(0.005)  # a poll of the pool thread's record, with a deadline


def test_a_token_keeps_its_mark_and_a_new_one_moves_it(authorizer):
    first, how = authorizer.mark(URL, "a")
    assert how == MAYBE  # nothing known before
    assert authorizer.mark(URL, "a") == (first, SAME)
    second, how = authorizer.mark(URL, "b")
    assert (second > first, how) == (True, CHANGED)
    third, how = authorizer.mark(URL, None)  # no token: may have changed
    assert (third > second, how) == (True, MAYBE)
    assert authorizer.mark(URL, None)[0] > third  # never the same without one
    authorizer.unmark(URL)
    assert authorizer.mark_of(URL) == 0


def test_a_question_begun_before_the_update_is_not_joined_in_a_fresh_process():
    """The test below, in an interpreter of its own: late in a full run, in the
    suite's process, its first pool question (a session read) once hung past
    60 s (seen only there; alone and in a fresh process it never did)."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         f"{__file__}::test_a_question_begun_before_the_update_is_not_joined"],
        env={**os.environ, ISOLATED: "1"}, cwd=ROOT, capture_output=True,
        text=True, timeout=80,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout, result.stdout


@pytest.mark.skipif(not os.environ.get("PUSHY_ISOLATED"), reason="run by the above")
def test_a_question_begun_before_the_update_is_not_joined(authorizer):
    who = authorizer.who(Visitor())  # anonymous, without a session
    before = gevent.spawn(authorizer.decide, who, URL)
    asked_times(1)
    mark, _ = authorizer.mark(URL, "new")
    after = [gevent.spawn(authorizer.decide, who, URL, mark) for _ in range(5)]
    asked_times(2)
    gevent.sleep(0.05)
    assert len(auth.ASKED) == 2  # the five share one question, not the old one
    auth.GATE.set()
    gevent.joinall([before, *after], raise_error=True)
    now = time.monotonic()
    assert authorizer.known(who.identity, URL, now, mark=mark) is True
    # The next change of token: that decision no longer counts (until asked).
    newer, _ = authorizer.mark(URL, "newer")
    assert authorizer.known(who.identity, URL, now, mark=newer) is None
    assert authorizer.known(who.identity, URL, now, stale=True) is True  # deletes
