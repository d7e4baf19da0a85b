"""Request limits: body size (before parsing) and per-key rate limiting.

Body size is enforced twice, both before the JSON is parsed:

1. from ``Content-Length``: a request that announces too many bytes is answered 413
   at once and its body is never read;
2. while streaming: a chunked body, or one whose ``Content-Length`` lies, is counted as
   it arrives and cut off with 413 as soon as it passes the limit.

Rate limiting is a token bucket per API key, **in process**: each worker keeps its own
buckets, so with ``--workers N`` a key can make up to N times the configured rate, and
buckets reset on restart. That is enough to stop a runaway client; a shared limiter
(e.g. at the reverse proxy or in Redis) is the place for a hard global quota.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._asgi import json_error_response


class BodyTooLarge(HTTPException):
    """413. An HTTPException so FastAPI's body reader passes it through unchanged."""

    def __init__(self, limit: int):
        super().__init__(413, f"request body is over the limit of {limit} bytes")
        self.limit = limit


class BodyLimitMiddleware:
    """Pure ASGI middleware refusing bodies over ``max_bytes`` with 413."""

    def __init__(self, app: ASGIApp, *, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0:
                    await json_error_response(scope, send, 400, "invalid Content-Length header")
                    return
                if declared > limit:
                    await json_error_response(scope, send, 413, BodyTooLarge(limit).detail)
                    return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge as exc:
            # Normally FastAPI turns it into a 413 itself; this catches reads made elsewhere.
            if not started:
                await json_error_response(scope, send, 413, exc.detail)


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token bucket per key: ``burst`` tokens, refilled at ``per_minute / 60`` a second.

    Thread-safe: sync endpoints and dependencies run in a thread pool.
    """

    def __init__(self, *, per_minute: int, burst: int, clock=time.monotonic):
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str) -> float:
        """Take one token for ``key``. Returns 0 when allowed, else seconds to wait."""
        now = self.clock()
        with self._lock:
            b = self._buckets.get(key)
            if b is None:
                b = self._buckets[key] = _Bucket(tokens=self.burst, updated=now)
            b.tokens = min(self.burst, b.tokens + (now - b.updated) * self.rate)
            b.updated = now
            if b.tokens >= 1.0:
                b.tokens -= 1.0
                return 0.0
            return (1.0 - b.tokens) / self.rate

    @staticmethod
    def retry_after(wait: float) -> str:
        """The Retry-After header value: whole seconds, at least 1."""
        return str(max(1, math.ceil(wait)))
