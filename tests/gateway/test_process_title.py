"""``ps`` and ``top`` show the gateway as runpushy, not ``python -c import gevent``."""

import pytest

from tests.support.gateway import Gateway

pytestmark = pytest.mark.timeout(60)


def read(path: str) -> str:
    with open(path, "rb") as f:
        return f.read().replace(b"\0", b" ").decode().strip()


def test_ps_and_top_show_runpushy_and_where_it_listens(pushy_redis):
    with Gateway(pushy_redis.url) as gateway:
        # runpushy execs the gateway: the pid stays the command's.
        pid = gateway.pid
        assert read(f"/proc/{pid}/cmdline") == f"runpushy 127.0.0.1:{gateway.port}"
        assert read(f"/proc/{pid}/comm").startswith("runpushy")
