"""The FastAPI application: ``create_app()`` and the uvicorn factory ``app``.

    uvicorn --factory api.app:app        # or: flagger serve

The Flagger and the review store are built once per worker process, in the lifespan
(``app.state.flagger``, ``app.state.store``), never per request. Tests pass their own
``flagger=`` and ``store=``.

The service never makes an outbound network call: it answers requests and writes to
its own review store, nothing else. It suggests; a DSL decides.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from flagger import __version__
from flagger.errors import ConflictError, FlaggerError, InputRecordError, NotFoundError, PermissionDenied, StoreError
from flagger.settings import Settings, get_settings

from .auth import KeyCache
from .contracts import SCAN_TAGS
from .limits import BodyLimitMiddleware, RateLimiter
from .metrics import AccessMiddleware, Metrics
from .service import LoopScanner, ops, v1

log = logging.getLogger("flagger.api")

DESCRIPTION = """
Suggests safeguarding concerns in case notes, with the evidence highlighted, for a
Designated Safeguarding Lead (DSL) to confirm or reject.

**It never refers.** No route contacts an agency, confirms a concern or makes any
outbound call; every concern is a suggestion until a named person decides.

Authenticate with an API key from `flagger keys create`: `Authorization: Bearer <key>`.
Roles: `scanner` (scan, queue), `reviewer` (review items), `admin` (keys, and all else).

Every concern carries its evidence (character offsets into the note) and an
`explanation`: the lexicon indicator ids that fired, the lexicon version, the context
rules that suppressed hits (negation, history, other person...), and the model score
and threshold when a model is in use.

Note text never appears in logs, metrics or error messages.
"""

_STATUS_FOR: list[tuple[type[FlaggerError], int]] = [
    (NotFoundError, 404),
    (PermissionDenied, 403),
    (ConflictError, 409),
    (InputRecordError, 422),
    (StoreError, 503),
]
_LOC_PART_MAX = 40


def _clean_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validation errors without ``input`` and ``ctx`` (both can hold note text)."""
    out = []
    for e in errors:
        loc = [p if not isinstance(p, str) or len(p) <= _LOC_PART_MAX else p[:_LOC_PART_MAX] + "..."
               for p in e.get("loc", ())]
        if len(loc) >= 2 and loc[0] == "body" and loc[1] in SCAN_TAGS:
            del loc[1]  # the union's tag ("one"/"batch") is ours, not a field the client sent
        out.append({"loc": loc, "msg": str(e.get("msg", "invalid")), "type": str(e.get("type", "value_error"))})
    return out


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse(status_code=422, content={"detail": _clean_errors(list(exc.errors()))})


async def _flagger_error(request: Request, exc: FlaggerError) -> JSONResponse:
    code = next((c for cls, c in _STATUS_FOR if isinstance(exc, cls)), 500)
    # Messages of our typed errors name ids and offsets only, never note text.
    return JSONResponse(status_code=code, content={"detail": f"[{exc.code}] {exc.message}"})


def _build_flagger(settings: Settings):
    from flagger.engine import Flagger

    return Flagger(lexicon_dir=settings.lexicon_dir, context_rules=settings.context_rules, model=settings.model,
                   models_dir=settings.models_dir, max_note_chars=settings.max_note_chars)


def create_app(settings: Settings | None = None, *, flagger=None, store=None) -> FastAPI:
    """Build the service.

    Args:
        settings: configuration (default: ``get_settings()``, from env and config file).
        flagger: a ready ``Flagger`` (default: built in the lifespan from settings).
        store: a ready ``ReviewStore`` (default: opened in the lifespan at
            ``settings.database_url``, migrated, and closed on shutdown).

    Returns:
        The FastAPI app; ``api.review.install(app)`` is applied when available.
    """
    settings = settings or get_settings()
    owns_store = store is None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if app.state.flagger is None:
            app.state.flagger = await run_in_threadpool(_build_flagger, settings)
        if app.state.store is None:
            from flagger.store import ReviewStore

            app.state.store = await run_in_threadpool(ReviewStore, settings.database_url)
        log.info("flagger service ready: %s", app.state.flagger.versions.model_dump_json())
        try:
            yield
        finally:
            # uvicorn has stopped taking requests and let those in flight finish.
            app.state.loop_scanner.close()
            if owns_store and app.state.store is not None:
                app.state.store.engine.dispose()
            log.info("flagger service stopped")

    app = FastAPI(
        title="flagger",
        version=__version__,
        summary="Safeguarding concern suggestions for DSL review. Never refers.",
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=[
            {"name": "scan", "description": "Scan notes; suggestions only."},
            {"name": "metadata", "description": "Taxonomy, lexicons and models in use."},
            {"name": "keys", "description": "API key management (admin)."},
            {"name": "operations", "description": "Health, readiness and metrics (no key needed)."},
        ],
    )
    app.state.settings = settings
    app.state.flagger = flagger
    app.state.store = store
    app.state.metrics = Metrics()
    app.state.rate_limiter = RateLimiter(per_minute=settings.rate_limit_per_minute, burst=settings.rate_limit_burst)
    app.state.key_cache = KeyCache(settings.api_key_cache_seconds)
    app.state.scan_lock = asyncio.Lock()
    app.state.loop_scanner = LoopScanner()
    app.state.key_inflight = {}  # token digest -> the store check in flight (api/auth.py)

    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(FlaggerError, _flagger_error)
    app.include_router(v1)
    app.include_router(ops)
    _install_review(app)

    # Middleware: the last added runs first. Order on the way in:
    # access log/metrics -> body limit -> CORS (if any) -> routes.
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_credentials=settings.cors_allow_credentials,
                           allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type", "X-Request-ID"])
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.api_max_body_bytes)
    app.add_middleware(AccessMiddleware, metrics=app.state.metrics)
    return app


def _install_review(app: FastAPI) -> None:
    """Add the DSL review workspace (issue #7) when its package is present."""
    app.state.review_installed = False
    try:
        import api.review as review
    except ImportError as exc:
        if getattr(exc, "name", "") != "api.review":
            # Present but not importable: run the scan service, and say so loudly.
            log.error("api.review is present but failed to import (%s: %s); review routes are off",
                      type(exc).__name__, getattr(exc, "name", ""))
        return
    install = getattr(review, "install", None)
    if callable(install):
        install(app)
        app.state.review_installed = True


def app() -> FastAPI:
    """The uvicorn factory (``uvicorn --factory api.app:app``): settings from env/config."""
    return create_app()
