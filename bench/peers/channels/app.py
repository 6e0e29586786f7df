"""The Channels baseline, written the way the Channels docs teach.

An ``AsyncJsonWebsocketConsumer`` behind ``AllowedHostsOriginValidator`` and
``AuthMiddlewareStack``, one channel-layer group per subscribed URL, speaking
wire protocol v1. ``bench.peers.channels.bridge`` turns pushy's Redis messages into
``group_send`` calls. Served by daphne:

    daphne -b 127.0.0.1 -p PORT bench.peers.channels.app:application
"""

from __future__ import annotations

import hashlib
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.peers.channels.settings")
django_asgi = get_asgi_application()  # sets Django up before the imports below

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.db import database_sync_to_async  # noqa: E402
from channels.generic.websocket import AsyncJsonWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import path  # noqa: E402

from bench.site.auth import authorize  # noqa: E402


def group_name(url: str) -> str:
    # Group names allow only [a-zA-Z0-9._-] and < 100 characters; URLs do not.
    return "url." + hashlib.sha1(url.encode()).hexdigest()


class PushyConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        self.subscribed: set[str] = set()
        await self.accept()

    async def receive_json(self, content, **kwargs) -> None:
        action = content.get("action") if isinstance(content, dict) else None
        url = content.get("url") if isinstance(content, dict) else None
        if action == "ping":
            await self.send_json({"type": "pong"})
        elif action in ("subscribe", "unsubscribe") and isinstance(url, str):
            await getattr(self, action)(url)
        else:
            await self.send_json({"type": "error", "code": "invalid", "message": "?"})

    async def subscribe(self, url: str) -> None:
        if not await database_sync_to_async(authorize)(self.scope["user"], url):
            await self.send_json({"type": "error", "url": url, "code": "forbidden"})
            return
        await self.channel_layer.group_add(group_name(url), self.channel_name)
        self.subscribed.add(url)
        await self.send_json({"type": "subscribed", "url": url})

    async def unsubscribe(self, url: str) -> None:
        await self.channel_layer.group_discard(group_name(url), self.channel_name)
        self.subscribed.discard(url)
        await self.send_json({"type": "unsubscribed", "url": url})

    async def disconnect(self, code: int) -> None:
        for url in self.subscribed:
            await self.channel_layer.group_discard(group_name(url), self.channel_name)

    async def pushy_update(self, event: dict) -> None:
        await self.send_json({"type": "update", **event["update"]})


application = ProtocolTypeRouter(
    {
        "http": django_asgi,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter([path("ws", PushyConsumer.as_asgi())]))
        ),
    }
)
