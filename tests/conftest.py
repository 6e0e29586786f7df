import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from tests.support.cluster import ClusterServers
from tests.support.postgres import find_or_start
from tests.support.servers import RedisServer

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def redis_server():
    """One private Redis for the session; tests flush it before they start."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster():
    """One private Redis Cluster for the session: 3 masters, 3 replicas
    (tests/support/cluster.py); ``.startup_nodes()`` and ``.url`` for redis-py."""
    cluster = ClusterServers().start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def postgres_server():
    """The machine's PostgreSQL, or a private one (tests/support/postgres.py)."""
    server = find_or_start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def django_db_modify_db_settings(request, django_db_modify_db_settings_parallel_suffix):
    """Point the "capture" alias at a PostgreSQL, when a collected test needs one.

    pytest-django runs this before it creates the test databases, so the
    PostgreSQL test database (its own name per session) is created there and
    dropped at the end.
    """
    if not any(item.get_closest_marker("postgres") for item in request.session.items):
        return
    server = request.getfixturevalue("postgres_server")
    from django.conf import settings
    from django.db import connections

    for target in (settings.DATABASES["capture"], connections["capture"].settings_dict):
        target.update(HOST=server.host, PORT=str(server.port), USER=server.user)


@pytest.fixture(autouse=True)
def fresh_failure_counts():
    """Each test sees its own first build failure logged in full."""
    from pushy import signals

    signals.failures.clear()
    yield
    signals.failures.clear()


@pytest.fixture(autouse=True)
def pushy_redis(redis_server, settings):
    """Point pushy at the private Redis, emptied but for the version books.

    A flush would also take the versions, and a gateway that outlives one test
    (module-scoped ones) would rightly see Redis losing them: a new epoch, and
    an unasked-for resync to that module's next clients.
    """
    settings.PUSHY_SETTINGS = {**settings.PUSHY_SETTINGS, "REDIS_URL": redis_server.url}
    client = redis.Redis.from_url(redis_server.url)
    keys = [key for key in client.scan_iter(count=1000) if not key.endswith(BOOK)]
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start : start + 1000])
    yield redis_server
    client.close()


# The end of every version book's key (pushy.versions.book_key()).
BOOK = b":version}:book"


def subprocess_env(redis_url: str, **extra: str) -> dict[str, str]:
    """Environment for a Django subprocess sharing this test's DB and Redis."""
    from django.db import connection, connections

    env = dict(os.environ)
    if "capture" in connections.settings:  # the PostgreSQL alias, as pointed
        capture = connections["capture"].settings_dict
        env.update(
            PUSHY_TEST_PG_HOST=capture["HOST"],
            PUSHY_TEST_PG_PORT=str(capture["PORT"]),
            PUSHY_TEST_PG_USER=capture["USER"],
            PUSHY_TEST_PG_NAME=capture["NAME"],
        )
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
        PUSHY_REDIS_URL=redis_url,
        PUSHY_TEST_DB_NAME=str(connection.settings_dict["NAME"]),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@pytest.fixture
def manage(pushy_redis):
    """Run ``manage.py <args>`` as a real subprocess on this test's DB and Redis."""

    def run(*args: str, redis_url: str | None = None, timeout: float = 60):
        env = subprocess_env(redis_url or pushy_redis.url)
        return subprocess.run(
            [sys.executable, "-m", "django", *args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


@pytest.fixture
def closing():
    """``closing(thing)``: ``thing``, entered if it is a context manager (a
    Gateway), closed or exited when the test ends, last first; a test needs
    no try/finally for the gateways and clients it opens."""
    with contextlib.ExitStack() as stack:

        def close_later(thing):
            if hasattr(thing, "__enter__"):
                return stack.enter_context(thing)
            stack.callback(thing.close)
            return thing

        yield close_later


@pytest.fixture
def published(pushy_redis):
    """A real Redis subscriber to every pushy channel."""
    from tests.redis_subscriber import Subscriber

    subscriber = Subscriber(pushy_redis.url)
    yield subscriber
    subscriber.close()
