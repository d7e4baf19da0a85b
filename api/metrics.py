"""Prometheus metrics and structured JSON access logs.

Neither ever holds note text or note ids: metrics are labelled by route *template*
(``/v1/review/{item_id}``, never the filled-in path), method, status and category;
access log lines carry request id, key id, status, latency and counts only.

Each app gets its own ``CollectorRegistry`` so tests can build many apps. With
``--workers N`` (N > 1) ``flagger serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` to a fresh
temporary folder before the workers start, so /metrics adds up every worker
(prometheus_client multiprocess mode).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import traceback
import uuid

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._asgi import json_error_response

access_log = logging.getLogger("flagger.access")
error_log = logging.getLogger("flagger.api")

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class Metrics:
    """The service's Prometheus metrics, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("flagger_http_requests", "HTTP requests by route template, method and status.",
                                ["endpoint", "method", "status"], registry=r)
        self.latency = Histogram("flagger_http_request_duration_seconds", "Request latency by route template.",
                                 ["endpoint", "method"], buckets=_LATENCY_BUCKETS, registry=r)
        self.notes = Counter("flagger_notes_scanned", "Notes scanned, by result status (scanned or error).",
                             ["status"], registry=r)
        self.concerns = Counter("flagger_concerns_suggested", "Concerns suggested, by category and level.",
                                ["category", "level"], registry=r)
        self.queued = Counter("flagger_suggestions_queued", "Suggestions put in the review queue (new or existing).",
                              registry=r)
        self.scan_latency = Histogram("flagger_scan_duration_seconds", "Time spent scanning one request's notes.",
                                      buckets=_LATENCY_BUCKETS, registry=r)
        self.rate_limited = Counter("flagger_rate_limited", "Requests refused with 429.", registry=r)
        self.auth_failures = Counter("flagger_auth_failures", "Requests refused with 401 or 403.", ["status"],
                                     registry=r)

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition format (all workers when in multiprocess mode)."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            reg = CollectorRegistry()
            multiprocess.MultiProcessCollector(reg)
            return generate_latest(reg), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else "<unmatched>"


class AccessMiddleware:
    """Outermost app middleware: request id, metrics, one JSON access line per request,
    and a last-resort 500 that logs the exception *type and frames only* (an exception
    message could quote its input) and is not re-raised, so no server log echoes it.

    Endpoints and dependencies add to the log line through ``request.state``:
    ``key_id``, ``notes``, ``concerns``, ``errors``.
    """

    def __init__(self, app: ASGIApp, *, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                if _REQUEST_ID_RE.match(candidate):
                    rid = candidate
        rid = rid or uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        status = 500
        response_started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [(b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:  # noqa: BLE001 - the last line of defence, by design
            frames = "".join(traceback.format_tb(exc.__traceback__))
            error_log.error("unhandled %s in request %s\n%s", type(exc).__name__, rid, frames)
            if not response_started:
                await json_error_response(scope, send_wrapper, 500,
                                          f"internal error (request id {rid}); nothing was stored")
            status = 500
        finally:
            elapsed = time.perf_counter() - started
            endpoint = _route_template(scope)
            method = scope.get("method", "")
            self.metrics.requests.labels(endpoint, method, str(status)).inc()
            self.metrics.latency.labels(endpoint, method).observe(elapsed)
            if status in (401, 403):
                self.metrics.auth_failures.labels(str(status)).inc()
            line = {
                "event": "access",
                "request_id": rid,
                "method": method,
                "endpoint": endpoint,
                "status": status,
                "latency_ms": round(elapsed * 1000, 2),
                "key_id": state.get("key_id"),
            }
            for k in ("notes", "concerns", "errors", "queued"):
                if k in state:
                    line[k] = state[k]
            access_log.info(json.dumps(line, separators=(",", ":")))
