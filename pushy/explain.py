"""``manage.py pushy_explain``'s questions, one function each.

Why did a page not update? For one object: what a save would publish, how many
gateway processes listen on Redis now, how many connections on each are
subscribed to the object's URL and its collection (asked through Redis, see
``pushy/gateway/explain.py``), and whether a user's subscription would be allowed.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from typing import Any

import redis
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.urls import Resolver404

from pushy import authorization, conf
from pushy.channels import explain_channel, explain_reply_prefix
from pushy.exceptions import PublishError
from pushy.publisher import redacted_redis_url
from pushy.redis_clients import client_from_url, publish

# How long the command waits for the gateways' answers.
ANSWER_TIMEOUT = 2.0


@dataclasses.dataclass
class GatewayCounts:
    """How many gateways got the question, and the answers of those that replied."""

    listening: int
    answers: list[dict[str, Any]]

    def total(self, url: str) -> int:
        return sum(answer["urls"].get(url, 0) for answer in self.answers)


def ask_gateways(urls: list[str], timeout: float = ANSWER_TIMEOUT) -> GatewayCounts:
    """Publish the question; collect one answer per listening gateway, or time out.

    PublishError when Redis cannot be reached.
    """
    key = explain_reply_prefix() + uuid.uuid4().hex
    request = json.dumps({"urls": urls, "reply": key})
    try:
        client = client_from_url(
            conf.get("REDIS_URL"), socket_connect_timeout=1, socket_timeout=timeout + 2
        )
        try:
            listening = publish(client, explain_channel(), request)
            answers = _collect(client, key, listening, timeout)
        finally:
            client.delete(key)
            client.close()
    except redis.RedisError as e:
        raise PublishError(f"Redis at {redacted_redis_url()}: {e}") from e
    return GatewayCounts(listening, answers)


def _collect(client: redis.Redis, key: str, expected: int, timeout: float) -> list:
    answers: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(answers) < expected and (left := deadline - time.monotonic()) > 0:
        # Whole seconds: BLPOP takes fractions only since Redis 6.
        popped = client.blpop([key], timeout=max(1, int(left + 0.999)))
        if popped is not None:
            answers.append(json.loads(popped[1]))
    return sorted(answers, key=lambda answer: answer.get("gateway", ""))


def authorizer() -> tuple[str, Any]:
    """The name and the function of the project's authorization."""
    name = conf.get("AUTHORIZE") or "pushy.authorization.can_get (the default)"
    return name, authorization.configured()


def decide(user: Any, url: str) -> tuple[bool, str]:
    """Whether ``user`` may subscribe to ``url`` as the gateway decides, and why."""
    name, authorize = authorizer()
    try:
        allowed, answer = authorization.ask(authorize, user, url)
    except Exception as e:
        return False, f"{name} raised {type(e).__name__}: {e} (the gateway refuses)"
    if answer is not None:
        return allowed, f"{name}: {describe(answer, url)}"
    return allowed, f"{name} returned {allowed}"


def view_answer(user: Any, url: str) -> str:
    """What the site answers ``user``'s GET of ``url`` (its middleware and view,
    as the gateway asks it), in words."""
    return describe(authorization.get_answer(user, url), url)


def describe(answer: authorization.Answer, url: str) -> str:
    """The site's answer to a GET of ``url``, in words: its view, its status or
    what it raised."""
    if answer.status is None:  # not served: said() tells why
        return f"{url} {answer.said()}"
    if answer.view is None and isinstance(answer.error, Resolver404):
        return f"no view: {url} does not resolve in the URLconf"
    view = f" ({view_name(answer.view)})" if answer.view is not None else ""
    if isinstance(answer.error, (Http404, PermissionDenied)):
        return f"GET {url}{view} raised {type(answer.error).__name__}"
    if answer.error is not None:
        error = answer.error
        return f"GET {url}{view} raised {type(error).__name__}: {error}"
    return f"GET {url}{view} {answer.said()}"


def view_name(func: Any) -> str:
    """The dotted name of a view: its class for class-based views and viewsets."""
    target = getattr(func, "view_class", None) or getattr(func, "cls", None) or func
    name = getattr(target, "__qualname__", None) or type(target).__qualname__
    return f"{target.__module__}.{name}"


def lag_bound(histogram: dict[str, Any], share: float) -> str | None:
    """The least bucket bound ``share`` of a histogram snapshot's observations
    are within ("10 ms", "over 30 s"); None when it has none."""
    count = histogram.get("count") or 0
    if not count:
        return None
    for bound, cumulative in histogram["buckets"].items():
        if cumulative >= share * count:
            if bound == "+Inf":
                return f"over {list(histogram['buckets'])[-2]} s"
            seconds = float(bound)
            return f"{seconds * 1000:g} ms" if seconds < 1 else f"{seconds:g} s"
    return None
