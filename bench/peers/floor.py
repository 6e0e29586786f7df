"""The floor: the least a gevent + gevent-websocket + redis-py broadcaster can do.

It speaks wire protocol v1 (subscribe, unsubscribe, ping; updates delivered to
subscribers of their ``url`` and ``collection``) and nothing more: no limits,
no auth, no send queue (a slow client stalls everyone), each frame built again
for every subscriber. The benchmark measures pushy's gateway against it to see
what the gateway's hardening costs over the bare stack.

    python -m bench.peers.floor --port PORT --redis redis://... [--prefix pushy_]
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
from collections import defaultdict  # noqa: E402

import gevent  # noqa: E402
import redis  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402
from geventwebsocket.exceptions import WebSocketError  # noqa: E402
from geventwebsocket.handler import WebSocketHandler  # noqa: E402

logger = logging.getLogger(__name__)
subscribers: defaultdict[str, set] = defaultdict(set)


def forward(redis_url: str, prefix: str) -> None:
    """Fan each Redis update out to the subscribers of its url and collection."""
    pubsub = redis.Redis.from_url(redis_url).pubsub(ignore_subscribe_messages=True)
    pubsub.psubscribe(prefix + "*")
    for message in pubsub.listen():
        update = json.loads(message["data"])
        text = json.dumps({"type": "update", **update})
        targets = set(subscribers.get(update["url"], ()))
        targets |= subscribers.get(update.get("collection"), set())
        for ws in targets:
            try:
                ws.send(text)
            except WebSocketError:
                pass  # the reader greenlet notices and cleans up


def reply(ws, request: dict) -> dict:
    action, url = request.get("action"), request.get("url")
    if action == "ping":
        return {"type": "pong"}
    if action == "subscribe" and isinstance(url, str):
        subscribers[url].add(ws)
        return {"type": "subscribed", "url": url}
    if action == "unsubscribe" and isinstance(url, str):
        subscribers[url].discard(ws)
        return {"type": "unsubscribed", "url": url}
    return {"type": "error", "code": "invalid", "message": "unknown request"}


def app(environ, start_response):
    ws = environ.get("wsgi.websocket")
    if ws is None:
        start_response("400 Bad Request", [("Content-Type", "text/plain")])
        return [b"WebSocket only\n"]
    try:
        while (text := ws.receive()) is not None:
            ws.send(json.dumps(reply(ws, json.loads(text))))
    except (WebSocketError, ValueError):
        pass
    finally:
        for subs in subscribers.values():
            subs.discard(ws)
    return []


def main() -> None:
    parser = argparse.ArgumentParser(description="the floor broadcaster")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--prefix", default="pushy_")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    gevent.spawn(forward, args.redis, args.prefix)
    server = WSGIServer(
        ("127.0.0.1", args.port), app, handler_class=WebSocketHandler, log=None
    )
    server.start()
    print(f"floor listening on {args.port}", flush=True)
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
