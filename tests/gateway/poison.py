"""Redis messages a gateway must drop, each addressed to ``URL`` if it were read."""

import json

# The gateways that receive these run with this MAX_UPDATE_BYTES.
MAX_UPDATE_BYTES = 4096
URL = "/api/shot/1/"


def body(**changes):
    fields = {"url": URL, "event": "update", "model": "testapp.shot", "pk": 1}
    fields.update(changes)
    return json.dumps(fields).encode()


# Each would reach the subscribed client if the gateway forwarded it.
POISON = [
    body(collection=["/api/shot/"]),  # the "unhashable type" in the hub
    body(collection={"a": 1}),
    body(pk=[1]),
    body(pk=True),
    body(url=1),
    body(event="explode"),
    body(data=[1, 2]),
    body(data={"x": 1}).replace(b'"x": 1', b'"x": NaN'),
    body().replace(b'"pk": 1', b'"pk": Infinity'),
    body(data={"x": "y" * MAX_UPDATE_BYTES}),  # over MAX_UPDATE_BYTES
    b"[" * 200_000 + b"]" * 200_000,  # RecursionError in json.loads
    b'{"url":"/api/shot/1/","event":"update","model":"m","pk":' + b"9" * 9000 + b"}",
    b"\xff\xfe\x00garbage",
    b"",
    b"null",
    b"[]",
    b'"/api/shot/1/"',
]
