"""How many PostgreSQL connections a gateway holds: docs/deployment.md,
"Database connections".

A gateway answers authorization questions (a session read, a view run) in
``DB_POOL_SIZE`` threads, each with its own connection, closed after its job as
after a request unless ``CONN_MAX_AGE`` keeps it. Here a real gateway, on the
machine's PostgreSQL, gets a burst of questions from logged-in sockets (each
subscribe to a view that checks a permission: queries in every question), and
its connections are counted in ``pg_stat_activity`` by their
``application_name`` while and after it answers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid

import psycopg
import pytest

from tests.gateway.clients import Client
from tests.support.gateway import READY_MARKER, ROOT, Gateway

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]

POOL_SIZE = 3
USERS = 12
URLS_EACH = 15

SETTINGS = """\
import os
from tests.settings import *  # noqa: F403

DATABASES = {{
    **DATABASES,  # noqa: F405
    "default": {{
        "ENGINE": "django.db.backends.postgresql",
        "HOST": {host!r},
        "PORT": {port!r},
        "USER": {user!r},
        "NAME": {name!r},
        "CONN_MAX_AGE": int(os.environ.get("PUSHY_CONN_MAX_AGE", "0")),
        "CONN_HEALTH_CHECKS": os.environ.get("PUSHY_CONN_HEALTH_CHECKS") == "1",
        "OPTIONS": {{"application_name": os.environ.get("PUSHY_APP_NAME", "setup")}},
    }},
}}
PUSHY_SETTINGS = {{**PUSHY_SETTINGS, "DB_POOL_SIZE": {pool}}}  # noqa: F405
"""

USERS_SCRIPT = f"""
import json
from django.contrib.auth.models import Permission, User
from django.test import Client
view_shot = Permission.objects.get(
    codename="view_shot", content_type__app_label="testapp"
)
keys = []
for i in range({USERS}):
    user = User.objects.create_user(f"user{{i}}", password="x")
    user.user_permissions.add(view_shot)
    browser = Client()
    browser.force_login(user)
    keys.append(browser.cookies["sessionid"].value)
print(json.dumps(keys))
"""


class Site:
    """A PostgreSQL database with the test project's tables, users and sessions."""

    def __init__(self, server, directory) -> None:
        self.server = server
        self.name = f"pushy_conns_{uuid.uuid4().hex[:12]}"
        self.module = f"pushy_conns_settings_{self.name}"
        self.dir = directory
        (directory / f"{self.module}.py").write_text(
            SETTINGS.format(
                host=server.host,
                port=str(server.port),
                user=server.user,
                name=self.name,
                pool=POOL_SIZE,
            )
        )
        self.keys: list[str] = []

    def env(self, **extra: str) -> dict[str, str]:
        from tests.conftest import subprocess_env

        return subprocess_env(
            "redis://127.0.0.1:1/0",
            DJANGO_SETTINGS_MODULE=self.module,
            PYTHONPATH=f"{self.dir}:{ROOT}",
            **extra,
        )

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "django", *args],
            env=self.env(),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def admin(self, sql: str, *args) -> list[tuple]:
        with psycopg.connect(
            host=self.server.host,
            port=self.server.port,
            user=self.server.user,
            dbname="postgres",
            autocommit=True,
            application_name="pushy-conns-counter",
        ) as connection:
            cursor = connection.execute(sql, args)
            return cursor.fetchall() if cursor.description else []

    def create(self) -> Site:
        self.admin(f'CREATE DATABASE "{self.name}"')
        self.manage("migrate", "-v", "0")
        self.keys = json.loads(
            self.manage("shell", "-c", USERS_SCRIPT).splitlines()[-1]
        )
        return self

    def drop(self) -> None:
        self.admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def site(postgres_server, tmp_path_factory):
    created = Site(postgres_server, tmp_path_factory.mktemp("conns"))
    try:
        yield created.create()
    finally:
        created.drop()


class Counter:
    """Samples the gateway's connections in pg_stat_activity; keeps the peak."""

    QUERY = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"

    def __init__(self, site: Site, app_name: str) -> None:
        self.app_name = app_name
        self.connection = psycopg.connect(
            host=site.server.host,
            port=site.server.port,
            user=site.server.user,
            dbname="postgres",
            autocommit=True,
            application_name="pushy-conns-counter",
        )
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def now(self) -> int:
        return self.connection.execute(self.QUERY, (self.app_name,)).fetchone()[0]

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self.now())

    def __enter__(self) -> Counter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.connection.close()


class Workers(Gateway):
    """``runpushy --workers N``: N gateway processes, each with its own pool."""

    def __init__(self, *args, workers: int = 1, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.workers = workers

    def command(self) -> list[str]:
        if self.workers == 1:
            return super().command()
        return super().command() + ["--workers", str(self.workers)]

    def start(self, timeout: float = 30) -> Workers:
        super().start(timeout)
        deadline = time.monotonic() + timeout
        while self.output().count(READY_MARKER) < self.workers:
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.02)  # the workers' start-up lines: polled from the output
        return self


def burst(ws_url: str, keys: list[str]) -> None:
    """Every user subscribes to URLS_EACH URLs at once; all must be allowed."""
    clients = [Client(ws_url, timeout=30, cookie=f"sessionid={key}") for key in keys]
    try:
        for client in clients:
            for n in range(URLS_EACH):
                client.send(action="subscribe", url=f"/fn/shot-viewers/?n={n}")
        for client in clients:
            for _ in range(URLS_EACH):
                answer = client.recv()
                assert answer["type"] == "subscribed", answer
    finally:
        for client in clients:
            client.close()


def settled(counter: Counter, expected: range, timeout: float = 5) -> int:
    """The count once it is in ``expected`` (or the last seen at the deadline)."""
    deadline = time.monotonic() + timeout
    while (count := counter.now()) not in expected and time.monotonic() < deadline:
        time.sleep(0.05)  # pool threads closing: nothing to wait on but the count
    return count


@pytest.mark.parametrize(
    ("conn_max_age", "workers", "peak_at_most", "idle"),
    [
        # Every pool thread answered questions and keeps its connection.
        (60, 1, POOL_SIZE, range(POOL_SIZE, POOL_SIZE + 1)),
        # The last job of the burst closes its connection; a thread that went
        # idle while others still worked keeps its own until its next job
        # (pushy/gateway/db_threads.py, after_job).
        (0, 1, POOL_SIZE, range(0, POOL_SIZE)),
        # Each worker is a gateway with a pool of its own: more than one pool
        # holds them (how many of the 6 threads ran depends on how the kernel
        # spread the 12 sockets over the workers: all 6, unless one got few).
        (60, 2, 2 * POOL_SIZE, range(POOL_SIZE + 1, 2 * POOL_SIZE + 1)),
    ],
)
def test_connections_per_gateway(
    site, pushy_redis, conn_max_age, workers, peak_at_most, idle
):
    app_name = f"pushy-gw-{uuid.uuid4().hex[:8]}"
    gateway = Workers(
        pushy_redis.url,
        workers=workers,
        env={
            **site.env(PUSHY_APP_NAME=app_name, PUSHY_CONN_MAX_AGE=str(conn_max_age)),
            "PUSHY_REDIS_URL": pushy_redis.url,
        },
    )
    with gateway, Counter(site, app_name) as counter:
        burst(gateway.ws_url, site.keys)
        after = settled(counter, idle)
        stats = gateway.get_json("/stats")
        print(
            f"CONN_MAX_AGE={conn_max_age} workers={workers}: peak {counter.peak}, "
            f"idle {after}; authorizations {stats.get('authorizations')}"
        )
        assert 1 <= counter.peak <= peak_at_most
        assert after in idle


@pytest.mark.parametrize(
    ("conn_max_age", "health_checks"),
    [
        ("0", "0"),  # Django's defaults: connections close after their job
        ("60", "1"),  # kept connections, checked before their reuse
    ],
)
def test_questions_after_the_server_ended_kept_connections(
    site, pushy_redis, conn_max_age, health_checks
):
    """PostgreSQL (or PgBouncer) ends the idle connections a gateway kept (a
    restart, a failover, an idle timeout): the next questions must still be
    answered as before, not refused for an anonymous user."""
    app_name = f"pushy-gw-{uuid.uuid4().hex[:8]}"
    env = site.env(
        PUSHY_APP_NAME=app_name,
        PUSHY_CONN_MAX_AGE=conn_max_age,
        PUSHY_CONN_HEALTH_CHECKS=health_checks,
    )
    gateway = Workers(pushy_redis.url, env={**env, "PUSHY_REDIS_URL": pushy_redis.url})
    with gateway, Counter(site, app_name) as counter:
        burst(gateway.ws_url, site.keys[:6])
        # Some pool threads kept their connections (see the test above).
        assert settled(counter, range(1, POOL_SIZE + 1)) >= 1
        site.admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s",
            app_name,
        )
        assert settled(counter, range(0, 1)) == 0
        # Users whose sessions the gateway has not read yet, many questions.
        burst(gateway.ws_url, site.keys[6:])
