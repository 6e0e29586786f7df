"""Feeds the Channels baseline: pushy's Redis messages become ``group_send`` calls.

pushy's publisher PUBLISHes each update on ``CHANNEL_PREFIX + model``; a
Channels site would hand it to the layer, one ``group_send`` per URL the update
concerns (its own and its collection's).

    DJANGO_SETTINGS_MODULE=bench.peers.channels.settings \
        python -m bench.peers.channels.bridge
"""

from __future__ import annotations

import asyncio
import json
import sys

import django


async def bridge() -> None:
    import redis.asyncio as aioredis
    from channels.layers import get_channel_layer

    from bench.peers.channels.app import group_name
    from pushy import conf

    layer = get_channel_layer()
    client = aioredis.Redis.from_url(conf.get("REDIS_URL"))
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.psubscribe(conf.get("CHANNEL_PREFIX") + "*")
    sys.stdout.write("bridge subscribed\n")
    sys.stdout.flush()
    async for message in pubsub.listen():
        update = json.loads(message["data"])
        for url in {update["url"], update.get("collection")} - {None}:
            await layer.group_send(
                group_name(url), {"type": "pushy.update", "update": update}
            )


if __name__ == "__main__":
    django.setup()
    asyncio.run(bridge())
