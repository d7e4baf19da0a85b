"""Small raw-ASGI helpers for middleware that must answer before FastAPI runs."""

from __future__ import annotations

import json

from starlette.types import Scope, Send


async def json_error_response(scope: Scope, send: Send, status: int, detail: str,
                              headers: dict[str, str] | None = None) -> None:
    """Send ``{"detail": detail}`` with ``status``. ``detail`` must never hold note text."""
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    # Tell the client we will not read the rest of a body we refused.
    if status == 413:
        raw.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
