"""The gateway's plain HTTP endpoints: /health, /stats and /metrics."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pushy.gateway.handshake import http_response
from pushy.gateway.stats import prometheus_text


class Endpoints:
    """Answers plain HTTP requests from what the gateway's parts report.

    ``shutting_down`` says whether the gateway is stopping (/health is then 503).
    ``refused`` holds the updates the whole site refused at publish, per
    reason; the version prober replaces it (Gateway._probe_versions).
    """

    def __init__(
        self,
        *,
        stats: Any,
        hub: Any,
        acceptor: Any,
        listener: Any,
        admission: Any,
        authorizer: Any,
        pauses: Any,
        versions: Any,
        shutting_down: Callable[[], bool],
        presence: Any = None,
    ) -> None:
        self.stats = stats
        self.hub = hub
        self.acceptor = acceptor
        self.listener = listener
        self.admission = admission
        self.authorizer = authorizer
        self.pauses = pauses
        self.versions = versions
        self.shutting_down = shutting_down
        self.presence = presence
        self.refused: dict[str, int] = {}

    def snapshot(self) -> dict:
        snapshot = self.stats.snapshot(
            len(self.hub.connections), self.hub.subscriptions, self.listener.live
        )
        snapshot["max_connections"] = self.admission.max_connections
        snapshot["head_bytes_reading"] = self.acceptor.head_bytes
        snapshot["authorizations_pending"] = self.authorizer.pending
        questions = self.authorizer.questions
        snapshot["questions_waiting"] = questions.waiting
        snapshot["questions_running"] = questions.running - len(questions.overrunning)
        snapshot["questions_overrunning"] = len(questions.overrunning)
        snapshot["questions_stuck"] = len(questions.stuck())
        if self.presence is not None:
            snapshot["presence_urls"] = len(self.presence.rooms)
            snapshot["presence_members"] = self.presence.members
        snapshot.update(self.pauses.snapshot())
        snapshot["site_updates_refused"] = self.refused
        return snapshot

    def health(self) -> tuple[str, dict]:
        """/health's status line and body: 503 while what is published cannot
        be arriving here (docs/protocol.md, "Operations endpoints")."""
        if self.shutting_down():
            reason = "shutting_down"
        elif not self.listener.live:
            reason = "redis_subscription_down"
        else:
            reason = self.versions.problem
        detail = None
        if reason is None:
            detail = self.authorizer.questions.all_stuck()
            reason = detail and "authorization_stuck"
        if reason is None:
            return "200 OK", {"status": "ok", "redis": True}
        redis_up = reason == "authorization_stuck"
        body = {"status": "unavailable", "redis": redis_up, "reason": reason}
        if reason == "redis_subscription_down":
            detail = getattr(self.listener, "detail", None)  # a cluster's (what moved)
        if detail:
            body["detail"] = detail
        return "503 Service Unavailable", body

    def answer(self, environ: dict) -> bytes:
        """The answer to a plain HTTP request (not an upgrade)."""
        path = environ["PATH_INFO"]
        if path == "/health":
            answer = _json(*self.health())
        elif path == "/stats":
            answer = _json("200 OK", self.snapshot())
        elif path == "/metrics":
            text = prometheus_text(self.snapshot()).encode()
            content_type = "text/plain; version=0.0.4; charset=utf-8"
            answer = http_response("200 OK", content_type, text)
        else:
            answer = http_response("404 Not Found", "text/plain", b"not found\n")
        if environ["REQUEST_METHOD"] == "HEAD":
            return answer[: answer.index(b"\r\n\r\n") + 4]
        return answer


def _json(status: str, body: dict) -> bytes:
    return http_response(status, "application/json", json.dumps(body).encode())
