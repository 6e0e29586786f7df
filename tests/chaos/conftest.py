"""Fixtures of the chaos tests: Redis processes and scenarios, stopped by pid."""

import pytest

from tests.support.chaos import DurableRedis, Scenario, fresh_publisher, replica_pair


@pytest.fixture
def redis_factory():
    """``make(**options)``: a started ``DurableRedis``; all cleaned up after."""
    made = []

    def make(**options):
        server = DurableRedis(**options)
        made.append(server)
        return server.start()

    yield make
    for server in made:
        server.cleanup()


@pytest.fixture
def pair_factory():
    """``make()``: a started master/replica pair behind a proxy; cleaned up after."""
    made = []

    def make():
        pair = replica_pair()
        made.append(pair)
        return pair

    yield make
    for pair in made:
        pair.cleanup()


@pytest.fixture
def scenario(transactional_db, settings, redis_factory, pair_factory):
    """``make(redis_url, pushy_settings=None, **options)``: a started Scenario.

    pushy in this process (the saves) and the gateway both use ``redis_url``
    and ``pushy_settings``. Torn down (saver, pages, gateway) before the Redis
    fixtures it depends on; pushy's sender is started anew before and after.
    """
    made = []
    fresh_publisher()

    def make(redis_url, *, pushy_settings=None, **options):
        settings.PUSHY_SETTINGS = {
            **settings.PUSHY_SETTINGS,
            "REDIS_URL": redis_url,
            **(pushy_settings or {}),
        }
        scenario = Scenario(redis_url, gateway_settings=pushy_settings, **options)
        made.append(scenario)
        return scenario.start()

    yield make
    try:
        for scenario in made:
            scenario.close()
    finally:
        fresh_publisher()
