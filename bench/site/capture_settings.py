"""Settings for the capture scenario (``python -m bench.capture``): PostgreSQL.

The harness passes the database and Redis in the environment; ``BENCH_CAPTURE=1``
captures ``benchapp.item`` through triggers, otherwise the signal path runs.
"""

import os

from bench.site.settings import *  # noqa: F403

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ.get("BENCH_PG_HOST", "127.0.0.1"),
        "PORT": os.environ.get("BENCH_PG_PORT", "5432"),
        "USER": os.environ.get("BENCH_PG_USER", "postgres"),
        "NAME": os.environ.get("BENCH_PG_NAME", "postgres"),
    }
}

PUSHY_SETTINGS = {
    **PUSHY_SETTINGS,  # noqa: F405
    # One load client, no sessions: the scenario measures capture, not AUTHORIZE.
    "AUTHORIZE": "pushy.authorization.allow_all",
    "SEND_QUEUE_SIZE": 100_000,
    "SEND_QUEUE_BYTES": 64 * 1024 * 1024,
    "CAPTURE": os.environ.get("BENCH_CAPTURE") == "1",
}
