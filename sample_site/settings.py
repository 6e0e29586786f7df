"""Settings of the demo site: django-pushy's original photo-session example.

Meant for a laptop, not for production (DEBUG, a public SECRET_KEY). The demo
command and the browser tests point it at their own database, Redis and gateway
through the environment variables read below.
"""

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent

SECRET_KEY = "pushy-demo-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_htmx",  # only for {% htmx_script %}: htmx itself, for the htmx page
    "pushy",
    "sample_site.photosession",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "sample_site.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("PUSHY_DEMO_DB", str(HERE / "demo.sqlite3")),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STATIC_URL = "/static/"

REST_FRAMEWORK = {
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticatedOrReadOnly",
    ],
}

PUSHY_SETTINGS = {
    "MODELS": ["photosession.session", "photosession.shot", "photosession.order"],
    "SOCKET_SERVER": os.environ.get("PUSHY_SOCKET_SERVER", "http://localhost:8888/"),
    "CHANNEL_PREFIX": "pushy_",
    "DEBUG": DEBUG,
    "REDIS_URL": os.environ.get("PUSHY_REDIS_URL", "redis://localhost:6379/0"),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"pushy": {"handlers": ["console"], "level": "INFO"}},
}
