"""Property: whatever is published on Redis, every valid update still arrives.

Hypothesis publishes arbitrary JSON values, mangled updates, deep nesting and
arbitrary bytes on the pushy channels of a real runpushy, with valid updates
between them, while one real WebSocket client stays subscribed. The client must
get exactly what a small, independent model of protocol.md says: each valid
update addressed to it, in order, as published; nothing else (no poison, no
resync); and the gateway stays healthy.
"""

import json
import math

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.gateway.clients import Client
from tests.support.gateway import Gateway

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

SUBSCRIBED = "/api/shot/"
CHANNELS = ["pushy_testapp.shot", "pushy_testapp.session", "pushy_", "pushy_x.y"]
BASE = {
    "url": "/api/shot/7/",
    "event": "update",
    "model": "testapp.shot",
    "pk": 7,
    "collection": SUBSCRIBED,
}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.floats()  # NaN and Infinity included: json.dumps writes them
    | st.integers(-(2**70), 2**70)
    | st.text(max_size=20)
    | st.sampled_from(["/api/shot/", "update", "create", "delete", "testapp.shot"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def mangled_updates(draw):
    """A valid update with one field replaced, removed or added."""
    fields = dict(BASE)
    key = draw(st.sampled_from([*BASE, "data", "extra"]))
    if draw(st.booleans()) and key in fields:
        del fields[key]
    else:
        fields[key] = draw(json_values)
    return json.dumps(fields).encode()


deeply_nested = st.integers(1, 200_000).map(lambda n: b"[" * n + b"]" * n)
poison = st.one_of(
    json_values.map(lambda value: json.dumps(value).encode()),
    mangled_updates(),
    st.binary(max_size=300),
    deeply_nested,
)


def has_nan_or_infinity(value) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, list):
        return any(has_nan_or_infinity(v) for v in value)
    if isinstance(value, dict):
        return any(has_nan_or_infinity(v) for v in value.values())
    return False


def expected_message(body: bytes) -> dict | None:
    """What the client must receive for ``body``, per docs/protocol.md; or None."""
    try:
        fields = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(fields, dict) or has_nan_or_infinity(fields):
        return None
    if not {"url", "event", "model", "pk"} <= fields.keys():
        return None
    url, pk = fields["url"], fields["pk"]
    collection, data = fields.get("collection"), fields.get("data")
    valid = (
        isinstance(url, str)
        and fields["event"] in ("create", "update", "delete")
        and isinstance(fields["model"], str)
        and (isinstance(pk, str) or (isinstance(pk, int) and not isinstance(pk, bool)))
        and (collection is None or isinstance(collection, str))
        and (data is None or isinstance(data, dict))
    )
    if not valid or SUBSCRIBED not in (url, collection):
        return None
    message = {"type": "update", **{k: fields[k] for k in BASE if k in fields}}
    message.pop("collection", None)
    if collection is not None:
        message["collection"] = collection
    if data is not None:
        message["data"] = data
    return message


@pytest.fixture(scope="module")
def gateway(redis_server):
    # Every subscriber may see every URL: the subject here is what Redis may
    # carry, and the default authorization would withhold updates of URLs no
    # view serves (a collection subscriber sees only members it may GET).
    settings = {"AUTHORIZE": "pushy.authorization.allow_all"}
    with Gateway(redis_server.url, pushy_settings=settings) as gw:
        yield gw


@pytest.fixture(scope="module")
def client(gateway):
    c = Client(gateway.ws_url, timeout=10)
    c.subscribe(SUBSCRIBED)
    yield c
    c.close()


@pytest.fixture(scope="module")
def redis_client(gateway):
    r = redis.Redis.from_url(gateway.redis_url)
    yield r
    r.close()


def valid_update(n: int) -> bytes:
    fields = {**BASE, "url": f"/api/shot/{n}/", "pk": n, "data": {"n": n}}
    return json.dumps(fields).encode()


def test_valid_updates_survive_any_stream(gateway, client, redis_client):
    @settings(max_examples=60, deadline=None, database=None)
    @given(items=st.lists(st.tuples(st.sampled_from(CHANNELS), poison), max_size=6))
    def publish_and_check(items):
        expected = []
        sequence = [("pushy_testapp.shot", valid_update(0))]
        for n, (channel, body) in enumerate(items, start=1):
            sequence += [(channel, body), ("pushy_testapp.shot", valid_update(n))]
        pipe = redis_client.pipeline(transaction=False)
        for channel, body in sequence:
            pipe.publish(channel, body)
            message = expected_message(body)
            if message is not None:
                expected.append(message)
        assert all(receivers == 1 for receivers in pipe.execute())

        received = [client.recv() for _ in expected]
        assert received == expected
        # Nothing more is waiting: no forwarded poison and no resync.
        assert client.request(action="ping") == {"type": "pong"}

    publish_and_check()
    stats = gateway.get_json("/stats")
    assert gateway.get("/health")[0] == 200
    assert stats["redis_reconnects"] == 0 and stats["listener_restarts"] == 0
    assert stats["updates_invalid"] > 0 and stats["updates_failed"] == 0
