"""Django settings for pushy's tests, also used by the subprocesses they start.

Subprocesses (runpushy, pushy_test_broadcast) learn the test database and the
private Redis from environment variables the tests set.
"""

import os
import tempfile

SECRET_KEY = "pushy-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1", "example.com"]
USE_TZ = True

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "pushy",
    "tests.testapp",
    "tests.captureapp",
]

_default_db = os.path.join(tempfile.gettempdir(), f"pushy-tests-{os.getpid()}.sqlite3")
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("PUSHY_TEST_DB_NAME", _default_db),
        "TEST": {"NAME": os.environ.get("PUSHY_TEST_DB_NAME", _default_db + "-test")},
    },
    # PostgreSQL, for the capture tests only (tests/captureapp, routed here). The
    # tests point it at the machine's server or a private one (tests/conftest.py);
    # the test database is created per session and dropped at its end.
    "capture": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ.get("PUSHY_TEST_PG_HOST", "127.0.0.1"),
        "PORT": os.environ.get("PUSHY_TEST_PG_PORT", "5432"),
        "USER": os.environ.get("PUSHY_TEST_PG_USER", "postgres"),
        "NAME": os.environ.get("PUSHY_TEST_PG_NAME", "postgres"),
        "TEST": {"NAME": f"pushy_capture_test_{os.getpid()}"},
    },
}
DATABASE_ROUTERS = ["tests.captureapp.routers.CaptureRouter"]

# A site's usual stack: the default authorization serves its GET through it.
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": ["django.template.context_processors.request"]
        },
    }
]
STATIC_URL = "/static/"
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

PUSHY_SETTINGS = {
    "MODELS": [
        "testapp.shot",
        "testapp.session",
        "testapp.note",
        "testapp.post",
        "testapp.article",
        "captureapp.item",
        "captureapp.tag",
    ],
    # Captured by triggers on "capture"; the testapp models keep the signal path.
    "CAPTURE": ["captureapp.item", "captureapp.tag"],
    "CAPTURE_DATABASE": "capture",
    "SOCKET_SERVER": "http://localhost:8888/",
    # Port 1 has no Redis: tests point this at their private server.
    "REDIS_URL": os.environ.get("PUSHY_REDIS_URL", "redis://127.0.0.1:1/0"),
    "CHANNEL_PREFIX": "pushy_",
    # Posts' views decide by these; articles (same views) are left out on purpose.
    "VISIBILITY_FIELDS": {"testapp.post": ["published", "author"]},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"pushy": {"handlers": ["console"], "level": "INFO"}},
}
