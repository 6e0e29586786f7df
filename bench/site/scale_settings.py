"""Settings for ``python -m bench.scale``: bench.site.settings with explicit limits.

``MAX_CONNECTIONS`` comes from the harness (BENCH_MAX_CONNECTIONS), per gateway
process, within the open-file limit; heartbeats at pushy's default interval
(25 s): idle connections held at scale are what this scenario is about, and
bench.site.settings' 5 s would make every client answer a ping per 5 s.
"""

import os

from bench.site.settings import *  # noqa: F403
from bench.site.settings import PUSHY_SETTINGS

PUSHY_SETTINGS = {
    **PUSHY_SETTINGS,
    "MAX_CONNECTIONS": int(os.environ.get("BENCH_MAX_CONNECTIONS", 1000)),
    # Every load client process connects from one of a few loopback addresses.
    "MAX_CONNECTIONS_PER_CLIENT": None,
    "PING_INTERVAL": 25,
    # The warm-up's verdicts must outlive a connect of 100,000 clients.
    "AUTHORIZATION_TTL": 3600,
}
