"""django-pushy: push Django model changes to browsers over WebSockets.

``broadcast``, ``is_pushed``, ``notify`` and ``notify_many`` (pushy.api) are
imported on first use: the gateway's process imports ``pushy.gateway.locks``
before Django, logging's configuration or redis-py may be (see that module).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "broadcast", "is_pushed", "notify", "notify_many"]

if TYPE_CHECKING:
    from pushy.api import broadcast, is_pushed, notify, notify_many


def __getattr__(name: str) -> Any:
    if name in __all__:
        from pushy import api

        return getattr(api, name)
    raise AttributeError(f"module 'pushy' has no attribute {name!r}")
