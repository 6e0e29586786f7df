"""Authorization work is fair and bounded, in a real gateway with real views.

A flood of subscribes from one client address (anonymous sockets, each asking
about a URL of its own, each a 50 ms view) must not delay another address's
fresh subscribe; the flood's questions are dropped unasked once its sockets
close; past the per-address bound a subscribe is refused at once; a view past
AUTHORIZATION_TIMEOUT is refused with a message. Loopback has all of
127.0.0.0/8, so a socket bound to 127.0.0.2 is another client address.
"""

import json
import re
import time

import pytest
from django.contrib.auth.models import User

from tests.gateway.clients import RawClient, frame, session_cookie
from tests.support.gateway import Gateway

pytestmark = [pytest.mark.timeout(60), pytest.mark.django_db(transaction=True)]

FLOOD = 600  # sockets; at 4 threads and 50 ms a question, 7.5 s of work


@pytest.fixture
def connect(closing):
    """``connect(gw, source, **headers)``: a raw client upgraded to a WebSocket
    from address ``source``; closed when the test ends."""

    def connect(gw: Gateway, source: str = "127.0.0.1", **headers: str) -> RawClient:
        client = closing(RawClient("127.0.0.1", gw.port, timeout=10, source=source))
        head = client.upgrade(**headers)
        assert head.startswith("HTTP/1.1 101"), head
        return client

    return connect


def wait_for_stats(gw: Gateway, done, timeout: float = 15) -> dict:
    """Poll /stats (with a deadline) until ``done(stats)``; those stats."""
    deadline = time.monotonic() + timeout
    while True:
        stats = gw.get_json("/stats")
        if done(stats):
            return stats
        assert time.monotonic() < deadline, stats
        time.sleep(0.02)  # a poll of /stats


def metric(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert found, name
    return float(found.group(1))


def test_a_flood_from_one_address_delays_no_other_and_is_dropped_when_closed(
    django_db_setup, start_gateway, connect
):
    cookie = session_cookie(User.objects.create_user("alice", password="x"))
    flood: list[RawClient] = []
    gw = start_gateway(MAX_QUESTIONS_PER_CLIENT=1000, AUTHORIZATION_TIMEOUT=30)
    for n in range(FLOOD):
        client = connect(gw)
        client.send_json(action="subscribe", url=f"/fn/sleep/50/?q={n}")
        flood.append(client)
    wait_for_stats(gw, lambda s: s["questions_waiting"] >= FLOOD // 2)

    alice = connect(gw, source="127.0.0.2", Cookie=cookie)
    asked = time.monotonic()
    alice.send_json(action="subscribe", url="/fn/sleep/50/?alice")
    answer = alice.recv_json()
    waited = time.monotonic() - asked
    assert answer == {"type": "subscribed", "url": "/fn/sleep/50/?alice"}
    assert waited < 1.0, f"a fresh subscribe waited {waited:.2f}s"

    before = gw.get_json("/stats")
    assert before["questions_waiting"] > FLOOD // 4  # the flood still waits
    for client in flood:
        client.close()
    flood.clear()
    after = wait_for_stats(
        gw, lambda s: s["questions_waiting"] == s["questions_running"] == 0
    )
    # Only the questions running (or starting) as the sockets closed ran.
    ran = after["authorizations"] - before["authorizations"]
    assert ran <= 4 + 16, (before, after)
    assert after["authorizations"] + after["questions_dropped"] == FLOOD + 1
    assert after["questions_dropped"] > FLOOD // 4
    assert after["questions_refused"] == after["questions_timed_out"] == 0

    metrics = gw.get("/metrics")[1]
    run = "pushy_gateway_question_run_seconds"
    wait = "pushy_gateway_question_wait_seconds"
    questions = after["authorizations"] + after["session_loads"]
    assert metric(metrics, f"{run}_count") == questions
    assert metric(metrics, f'{run}_bucket{{le="+Inf"}}') == questions
    # Every view took 50 ms or more: only session reads are quicker.
    assert metric(metrics, f'{run}_bucket{{le="0.05"}}') <= (after["session_loads"])
    assert metric(metrics, f"{run}_sum") >= 0.05 * after["authorizations"]
    assert metric(metrics, f"{wait}_count") == questions
    assert metric(metrics, f"{wait}_sum") > 0
    assert (
        metric(metrics, "pushy_gateway_questions_dropped_total")
        == (after["questions_dropped"])
    )
    alice.close()


def test_past_the_bound_of_an_address_a_subscribe_is_refused_at_once(
    django_db_setup, start_gateway, connect
):
    gw = start_gateway(MAX_QUESTIONS_PER_CLIENT=3, DB_POOL_SIZE=1)
    clients = [connect(gw) for _ in range(6)]
    for n, client in enumerate(clients):
        client.send_json(action="subscribe", url=f"/fn/sleep/300/?q={n}")
    answers = [client.recv_json() for client in clients]
    busy = [a for a in answers if a["type"] == "error"]
    assert [a["type"] for a in answers].count("subscribed") == 4, answers
    assert len(busy) == 2, answers
    for answer in busy:
        assert answer["code"] == "busy"
        assert "waiting for this client address" in answer["message"]
        assert "MAX_QUESTIONS_PER_CLIENT" in answer["message"]
    refused = clients[answers.index(busy[0])]
    refused.send_json(action="ping")  # the connection stays open
    assert refused.recv_json() == {"type": "pong"}
    assert gw.get_json("/stats")["questions_refused"] == 2


def test_a_view_past_the_timeout_is_refused_with_a_message(
    django_db_setup, start_gateway, connect
):
    gw = start_gateway(AUTHORIZATION_TIMEOUT=0.5, DB_POOL_SIZE=2)
    client = connect(gw)
    url = "/fn/sleep/3000/"
    asked = time.monotonic()
    client.send_json(action="subscribe", url=url)
    answer = client.recv_json()
    assert 0.4 < time.monotonic() - asked < 2.5
    assert answer["code"] == "timeout" and answer["url"] == url
    assert answer["message"] == (
        f"the authorization of {url} took longer than AUTHORIZATION_TIMEOUT (0.5 s)"
    )
    gw.wait_for_log(f"the authorization of {url} took longer than")
    # Asked again while it still runs: refused at once, no second thread.
    asked = time.monotonic()
    client.send_json(action="subscribe", url=url)
    assert client.recv_json()["code"] == "timeout"
    assert time.monotonic() - asked < 0.4
    # The other thread still serves.
    client.send_json(action="subscribe", url="/fn/sleep/10/")
    assert client.recv_json()["type"] == "subscribed"
    stats = gw.get_json("/stats")
    assert stats["questions_timed_out"] == 1
    assert stats["questions_overrunning"] == 1
    metrics = gw.get("/metrics")[1]
    assert metric(metrics, "pushy_gateway_questions_overrunning") == 1
    assert metric(metrics, "pushy_gateway_questions_timed_out_total") == 1
    wait_for_stats(gw, lambda s: s["questions_overrunning"] == 0, timeout=5)


def test_every_pool_thread_stuck_makes_health_say_so_until_one_returns(
    django_db_setup, start_gateway, connect
):
    """Stuck: running 12 AUTHORIZATION_TIMEOUTs (3 s here); the view's 5 s end."""
    gw = start_gateway(AUTHORIZATION_TIMEOUT=0.25, DB_POOL_SIZE=1)
    client = connect(gw)
    client.send_json(action="subscribe", url="/fn/sleep/5000/")
    assert client.recv_json()["code"] == "timeout"
    assert gw.get("/health")[0] == 200  # overrunning, not yet stuck
    waited = gw.wait_for_health(503, timeout=5)
    assert 1.5 < waited < 4.5
    status, body = gw.get("/health")
    assert status == 503, body
    answer = json.loads(body)
    assert answer["reason"] == "authorization_stuck" and answer["redis"] is True
    assert answer["detail"].startswith(
        "all 1 pool threads have run one question each for 3 s or more "
        "(the authorization of /fn/sleep/5000/"
    ), answer
    assert gw.get_json("/stats")["questions_stuck"] == 1
    assert metric(gw.get("/metrics")[1], "pushy_gateway_questions_stuck") == 1
    gw.wait_for_health(200, timeout=5)  # the view returned
    assert gw.get_json("/stats")["questions_stuck"] == 0


def test_a_client_that_says_goodbye_while_its_question_waits_is_not_asked_for(
    django_db_setup, start_gateway, connect
):
    gw = start_gateway(DB_POOL_SIZE=1)
    holder, leaver = connect(gw), connect(gw)
    holder.send_json(action="subscribe", url="/fn/sleep/1000/")
    wait_for_stats(gw, lambda s: s["questions_running"] == 1)
    leaver.send_json(action="subscribe", url="/fn/sleep/50/?leaving")
    wait_for_stats(gw, lambda s: s["questions_waiting"] == 1)
    # A close frame, read by nobody yet: the gateway reads nothing
    # more from a client whose subscribe waits, but sees it coming.
    leaver.send(frame(0x8, (1001).to_bytes(2, "big")))
    wait_for_stats(gw, lambda s: s["questions_dropped"] == 1)
    assert leaver.recv_close() == (1001, "")  # then answered in turn
    assert holder.recv_json()["type"] == "subscribed"
    stats = gw.get_json("/stats")
    assert stats["authorizations"] == 1 and stats["questions_waiting"] == 0
