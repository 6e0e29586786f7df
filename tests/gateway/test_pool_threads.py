"""Views run at once in the gateway's pool threads, in a real gateway.

Each subscribe here runs ``/fn/shares-locks/<n>/`` (tests/testapp/views.py):
a view that logs, looks up URLs and translations, sends a signal, uses the
cache, asks pushy's Redis client and the site's one ``redis.Redis``, fifty
times over, in the four pool threads at once. Before pushy/gateway/locks.py a
lock contended there could leave a thread asleep for good (its URL refused
"timeout" until a restart); before shared_sockets.py, a pooled connection
opened in one thread failed in another and the view answered 500 (the live
admin's join was refused so, one run in ten under load). Sessions kept in
django-redis (whose pools serve the whole process) are read so too.
"""

from __future__ import annotations

import itertools

import pytest

from tests.gateway.clients import Client, session_cookie
from tests.support.gateway import Gateway

pytestmark = [pytest.mark.timeout(90), pytest.mark.django_db(transaction=True)]

CLIENTS = 8
ROUNDS = 5
_numbers = itertools.count(1)


def test_views_sharing_locks_and_redis_in_every_pool_thread_all_answer(
    gateway, open_client
):
    clients: list[Client] = [open_client(gateway, timeout=20) for _ in range(CLIENTS)]
    answers: dict[str, dict] = {}
    for _ in range(ROUNDS):
        asked: dict[Client, set[str]] = {client: set() for client in clients}
        for client in clients:  # two each: MAX_QUESTIONS_PER_CONNECTION
            for _ in range(2):
                url = f"/fn/shares-locks/{next(_numbers)}/"
                client.send(action="subscribe", url=url)
                asked[client].add(url)
        for client, urls in asked.items():
            while urls - answers.keys():
                reply = client.recv()
                answers[reply["url"]] = reply
    assert len(answers) == CLIENTS * 2 * ROUNDS
    refused = [reply for reply in answers.values() if reply["type"] != "subscribed"]
    assert refused == [], gateway.output()[-3000:]
    stats = gateway.get_json("/stats")
    assert stats["questions_overrunning"] == 0
    assert "Cannot switch" not in gateway.output()


def test_sessions_kept_in_django_redis_are_read_in_every_pool_thread(
    pushy_redis, settings, django_user_model, closing
):
    # django-redis keeps its connection pools for the whole process, so a
    # session read in one pool thread reuses connections another one opened.
    site = {
        "CACHES": {
            "default": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": pushy_redis.url.rsplit("/", 1)[0] + "/1",
            }
        },
        "SESSION_ENGINE": "django.contrib.sessions.backends.cache",
    }
    for name, value in site.items():
        setattr(settings, name, value)
    people = [django_user_model.objects.create(username=f"p{n}") for n in range(24)]
    cookies = [session_cookie(person) for person in people]
    gateway = closing(Gateway(pushy_redis.url, settings=site))
    clients = [
        closing(Client(gateway.ws_url, timeout=20, cookie=cookie)) for cookie in cookies
    ]
    for client in clients:
        client.send(action="subscribe", url="/fn/members/")
    answers = [client.recv() for client in clients]
    assert [a["type"] for a in answers] == ["subscribed"] * len(people), answers
    assert "Cannot switch" not in gateway.output()
