"""django-pushy: push Django model changes to browsers over WebSockets."""

from pushy.api import notify, notify_many

__version__ = "0.1.0"

__all__ = ["__version__", "notify", "notify_many"]
