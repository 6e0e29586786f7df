"""Settings for the Channels baseline: the benchmark's, plus Channels' own."""

import os

from bench.site.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "channels"]  # noqa: F405
ASGI_APPLICATION = "bench.peers.channels.app.application"
# channels_redis as most sites configure it: the core layer, default capacity.
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:1/0")]
        },
    }
}
