"""A real Redis subscriber for asserting what pushy publishes."""

from __future__ import annotations

import json
import time

import redis

END = "pushy_test:end"  # matches the pattern "pushy_*"


class Subscriber:
    """PSUBSCRIBEs to ``pattern`` and hands back messages in order."""

    def __init__(self, url: str, pattern: str = "pushy_*") -> None:
        self.client = redis.Redis.from_url(url)
        self.pubsub = self.client.pubsub()
        self.versions: list[int] = []
        self.published: list[float] = []
        self.pubsub.psubscribe(pattern)
        # Wait for the confirmation: from here on, nothing published is missed.
        confirmation = self.pubsub.get_message(timeout=5)
        assert confirmation and confirmation["type"] == "psubscribe", confirmation

    def next(self, timeout: float = 5) -> tuple[str, dict]:
        """The next (channel, body) published, or AssertionError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = self.pubsub.get_message(timeout=left)
            if message and message["type"] == "pmessage":
                body = json.loads(message["data"])
                if isinstance(body, dict) and "version" in body:
                    # Given by Redis at publish (pushy/versions.py): checked
                    # here, kept apart so bodies compare as they were built.
                    version = body.pop("version")
                    assert isinstance(version, int) and version > 0, version
                    self.versions.append(version)
                if isinstance(body, dict) and "published" in body:
                    # The sender's stamp at the commit: within the test's time.
                    published = body.pop("published")
                    assert abs(time.time() - published) < 60, published
                    self.published.append(published)
                return message["channel"].decode(), body
        raise AssertionError(f"nothing published within {timeout}s")

    def bodies(self, count: int) -> list[dict]:
        return [self.next()[1] for _ in range(count)]

    def assert_nothing_more(self) -> None:
        """Publish a marker and check it is the next message: nothing came before."""
        self.client.publish(END, json.dumps({"end": True}))
        channel, body = self.next()
        assert channel == END, f"unexpected publish before the marker: {channel} {body}"

    def close(self) -> None:
        self.pubsub.close()
        self.client.close()
