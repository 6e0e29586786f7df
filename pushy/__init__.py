"""django-pushy: push Django model changes to browsers over WebSockets."""

from pushy.api import broadcast, is_pushed, notify, notify_many

__version__ = "0.1.0"

__all__ = ["__version__", "broadcast", "is_pushed", "notify", "notify_many"]
