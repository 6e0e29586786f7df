"""Django settings shared by every process of the benchmark.

The harness passes the database file and the private Redis in the environment
(BENCH_DB, BENCH_REDIS_URL). pushy's gateway runs with its hardening on: a real
AUTHORIZE callable that needs the session's user, an origin allow-list the load
client's Origin must match, heartbeats every few seconds, bounded send queues
and inbound rate limits at their defaults.
"""

import os
import tempfile

SECRET_KEY = "pushy-bench-only"
DEBUG = False
ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
USE_TZ = True

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "pushy",
    "bench.site.benchapp",
]

# startproject's stack: pushy's default authorization serves its GET through
# it, as the site would (bench.authz measures that).
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get(
            "BENCH_DB", os.path.join(tempfile.gettempdir(), "pushy-bench.sqlite3")
        ),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
ROOT_URLCONF = "bench.site.urls"

PUSHY_SETTINGS = {
    "MODELS": ["benchapp.item"],
    "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:1/0"),
    "CHANNEL_PREFIX": "pushy_",
    "ALLOWED_ORIGINS": ["localhost"],
    # bench.authz sets BENCH_AUTHORIZE: "" for pushy's default (run the view),
    # or pushy.authorization.allow_all.
    "AUTHORIZE": os.environ.get("BENCH_AUTHORIZE", "bench.site.auth.authorize") or None,
    "AUTHORIZATION_TTL": float(os.environ.get("BENCH_AUTHORIZATION_TTL", 60)),
    # What the item view reads to decide (bench/site/urls.py); bench.authz sets
    # BENCH_UNDECLARED=1 to measure the model left out (every update re-asked).
    "VISIBILITY_FIELDS": {}
    if os.environ.get("BENCH_UNDECLARED")
    else {"benchapp.item": ["hidden", "level"]},
    "PING_INTERVAL": 5,
    # Every load client connects from 127.0.0.1.
    "MAX_CONNECTIONS_PER_CLIENT": None,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
