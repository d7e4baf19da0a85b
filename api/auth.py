"""API key authentication and roles, as FastAPI dependencies.

Clients send ``Authorization: Bearer flg_<key_id>_<secret>``. Keys live in the review
store (``ReviewStore.create_api_key``; only a hash of the secret is stored) and carry one
role:

- ``scanner``: POST /v1/scan (with or without ``queue``);
- ``reviewer``: read and decide review items (the /v1/review routes of api/review);
- ``admin``: manage keys (/v1/keys) and everything the other roles may do.

Any valid key may read the metadata routes (/v1/categories, /v1/lexicons, /v1/models).

For other routers (e.g. ``api.review``)::

    from api.auth import require_role, Principal

    @router.get("/v1/review/items")
    def items(principal: Principal = Depends(require_role("reviewer"))): ...

``require_role(*roles)`` accepts a key whose role is one of ``roles`` or ``admin``;
with no key it answers 401 with ``WWW-Authenticate: Bearer``, with the wrong role 403,
over the key's rate 429 with ``Retry-After``. It needs ``app.state.store`` (a
``ReviewStore``), ``app.state.rate_limiter``, ``app.state.key_cache`` and
``app.state.key_inflight``, which ``api.app.create_app`` sets.
``principal.actor`` (``"key:<key_id>"``) is the actor name for audit events.

Verified keys are cached in process for ``api_key_cache_seconds`` (default 5 s) so a
request does not write to the store each time; a revocation made through this process
clears the cache at once, one made elsewhere takes effect within that time. An entry
in the last fifth of its life is re-checked in the background while requests go on
using it, so a busy key never waits for the store: before this, every expiry stalled
all of that key's requests behind one store round trip and a chain of lock hand-offs
(p99 at 8 clients 480 ms with one worker; see docs/service.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from fastapi import Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

log = logging.getLogger("flagger.api")

ROLES = ("scanner", "reviewer", "admin")

bearer = HTTPBearer(auto_error=False, description="An API key from `flagger keys create`, as a Bearer token.")


@dataclass(frozen=True)
class Principal:
    """Who is calling: an API key's id, name and role (never its secret)."""

    key_id: str
    name: str
    role: str

    @property
    def actor(self) -> str:
        return f"key:{self.key_id}"


class KeyCache:
    """Verified tokens by the SHA-256 of the token, for ``ttl`` seconds."""

    REFRESH_SHARE = 0.8  # older than this share of ttl: re-check in the background

    def __init__(self, ttl: float):
        self.ttl = ttl
        self._items: dict[str, tuple[Principal, float]] = {}  # digest -> (principal, stored at)
        self._lock = threading.Lock()

    @staticmethod
    def digest(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def lookup(self, token: str) -> tuple[Principal | None, bool]:
        """``(principal, refresh)``: the cached principal (None when absent or expired)
        and whether it is old enough to re-check now."""
        if self.ttl <= 0:
            return None, False
        with self._lock:
            hit = self._items.get(self.digest(token))
        if hit is None:
            return None, False
        age = time.monotonic() - hit[1]
        if age >= self.ttl:
            return None, False
        return hit[0], age >= self.ttl * self.REFRESH_SHARE

    def get(self, token: str) -> Principal | None:
        return self.lookup(token)[0]

    def put(self, token: str, principal: Principal) -> None:
        if self.ttl > 0:
            with self._lock:
                if len(self._items) > 10_000:  # bounded: forget everything rather than grow
                    self._items.clear()
                self._items[self.digest(token)] = (principal, time.monotonic())

    def drop(self, token: str) -> None:
        with self._lock:
            self._items.pop(self.digest(token), None)

    def forget_key(self, key_id: str) -> None:
        with self._lock:
            for digest in [d for d, (p, _) in self._items.items() if p.key_id == key_id]:
                del self._items[digest]


async def _check_key(app, token: str) -> Principal | None:
    """Ask the store about ``token`` (in a thread) and update the cache."""
    key = await run_in_threadpool(app.state.store.verify_api_key, token)
    cache: KeyCache = app.state.key_cache
    if key is None:
        cache.drop(token)
        return None
    principal = Principal(key_id=key.key_id, name=key.name, role=key.role)
    cache.put(token, principal)
    return principal


def _key_check_task(app, token: str) -> asyncio.Task:
    """The one store check in flight for ``token`` in this worker (started if none):
    requests arriving while it runs share it instead of queueing behind each other."""
    inflight: dict[str, asyncio.Task] = app.state.key_inflight
    digest = KeyCache.digest(token)
    task = inflight.get(digest)
    if task is None:
        task = asyncio.get_running_loop().create_task(_check_key(app, token))
        inflight[digest] = task

        def _done(t: asyncio.Task) -> None:
            inflight.pop(digest, None)
            if not t.cancelled() and t.exception() is not None:
                # Type only: a message could quote the token.
                log.warning("API key check failed (%s)", type(t.exception()).__name__)

        task.add_done_callback(_done)
    return task


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": 'Bearer realm="flagger"'})


async def authenticate(request: Request,
                       credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Principal:
    """The calling key, or 401. Also applies the key's rate limit (429).

    Async so a cached key costs no thread hop. A cache miss asks the store in the
    thread pool; requests for the same key arriving meanwhile share that one check, so
    they neither all write ``last_used_at`` to the store nor queue behind each other.
    """
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise _unauthorized("an API key is required: send 'Authorization: Bearer <key>'")
    token = credentials.credentials
    app = request.app
    cache: KeyCache = app.state.key_cache
    principal, refresh = cache.lookup(token)
    if principal is None:
        # shield: one caller going away must not cancel the check the others share
        principal = await asyncio.shield(_key_check_task(app, token))
        if principal is None:
            raise _unauthorized("the API key is unknown or revoked")
    elif refresh:
        _key_check_task(app, token)  # re-check in the background; this request goes on
    request.state.key_id = principal.key_id
    wait = app.state.rate_limiter.acquire(principal.key_id)
    if wait > 0:
        app.state.metrics.rate_limited.inc()
        raise HTTPException(429, f"rate limit for this key exceeded; retry after {wait:.1f} s",
                            headers={"Retry-After": app.state.rate_limiter.retry_after(wait)})
    return principal


def require_role(*roles: str) -> Callable[..., Principal]:
    """A dependency allowing keys with one of ``roles`` (``admin`` is always allowed).

    With no roles, any valid key passes.
    """
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown role(s) {sorted(unknown)}; roles are {ROLES}")
    allowed = set(roles) | {"admin"}

    async def dependency(principal: Principal = Depends(authenticate)) -> Principal:
        if roles and principal.role not in allowed:
            raise HTTPException(403, f"this key's role '{principal.role}' may not do this; "
                                     f"needs {' or '.join(sorted(allowed))}")
        return principal

    dependency.__name__ = f"require_role_{'_'.join(roles) or 'any'}"
    return dependency
