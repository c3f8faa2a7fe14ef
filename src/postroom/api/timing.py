"""How long API requests take, for /metrics: a pure ASGI middleware (a few µs a request;
Starlette's BaseHTTPMiddleware would cost a task and a stream per request)."""

from __future__ import annotations

import time
from typing import Any

from postroom.outbox.group_commit import LATENCY_BUCKETS_S, Histogram

__all__ = ["ApiLatency", "ApiTimer"]

Scope = dict[str, Any]

# the endpoints worth their own series; everything else is "other"
_NAMED = {("POST", "/api/v1/messages"): "send"}


class ApiLatency:
    """Request times by endpoint and method, rendered for /metrics."""

    def __init__(self) -> None:
        self.series: dict[tuple[str, str], Histogram] = {}

    def observe(self, endpoint: str, method: str, seconds: float) -> None:
        key = (endpoint, method if method in ("GET", "POST") else "other")
        histogram = self.series.get(key)
        if histogram is None:
            histogram = self.series.setdefault(key, Histogram(LATENCY_BUCKETS_S))
        histogram.observe(seconds)

    def render(self) -> list[str]:
        name = "postroom_api_request_seconds"
        lines = [
            f"# HELP {name} Time to answer API requests (this process).",
            f"# TYPE {name} histogram",
        ]
        for (endpoint, method), histogram in sorted(self.series.items()):
            lines += histogram.render(name, f'endpoint="{endpoint}",method="{method}"')
        return lines


class ApiTimer:
    """Records each HTTP request's time to its last response byte, by endpoint and method."""

    def __init__(self, app: Any, latency: ApiLatency) -> None:
        self.app = app
        self.latency = latency

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            method = scope["method"]
            path = scope["path"]
            if path.startswith("/api/v1/messages/"):
                name = "message"
            elif path == "/healthz":
                name = "healthz"
            else:
                name = _NAMED.get((method, path), "other")
            self.latency.observe(name, method, time.perf_counter() - started)
