"""The /v1 routes for case-management systems, plus health, readiness and metrics.

Every route only reads from the Flagger and writes to the review store; none makes
an outbound call. Suggestions are never confirmed or referred here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import text as sql_text

from flagger.categories import CATEGORIES
from flagger.schema import NoteIn, NoteResult

from .auth import Principal, require_role
from .contracts import (
    EXAMPLE_NOTE,
    CategoriesOut,
    CategoryOut,
    ErrorOut,
    HealthOut,
    KeyCreate,
    KeyCreated,
    KeyOut,
    KeysOut,
    LexiconFileOut,
    LexiconsOut,
    ModelOut,
    ModelsOut,
    QueueReceipt,
    ReadyOut,
    ScanBatch,
    ScanRequest,
    ScanResponse,
    ValidationErrorOut,
)

log = logging.getLogger("flagger.api")

AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "No API key, or an unknown or revoked one (WWW-Authenticate: Bearer)."},
    403: {"model": ErrorOut, "description": "The key's role may not call this route."},
    429: {"model": ErrorOut, "description": "Over the key's rate limit; see Retry-After."},
}
INPUT_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorOut, "description": "Body bytes or batch size over the limit (the message says which)."},
    422: {"model": ValidationErrorOut, "description": "Malformed input, field by field (values never echoed)."},
}

v1 = APIRouter(prefix="/v1")

# Requests whose notes hold at most this many characters in all (about 1,500 words,
# roughly 10-30 ms of scanning) are scanned on the event loop by LoopScanner; larger
# ones in a worker thread. Measured with benchmarks/load_test.py (2 workers, 196-word
# note, wrk, 2026-11-25): in a worker thread, p50 8.6 ms at 1 client and p99 81 ms at
# 8 clients (134 req/s); on the loop, 6.5 ms and 41 ms (338 req/s). The thread
# hand-off and the GIL ping-pong between loop and thread cost more than the scan.
INLINE_SCAN_CHARS = 10_000
ops = APIRouter()

_SCAN_EXAMPLES = {
    "one": {"summary": "One note", "value": EXAMPLE_NOTE},
    "batch": {"summary": "A batch, queued for review",
              "value": {"queue": True, "notes": [EXAMPLE_NOTE, {"id": "note-1843", "text": ""}]}},
}


class LoopScanner:
    """Runs short scans on the event loop one at a time, in the order they arrive.

    Scanning straight inside each request handler was as fast but unfair under load:
    requests were served in the order the loop happened to read their sockets, and at
    32 clients on one worker some waited over a second while others went straight
    through (p99 1.1-3.7 s, against 0.5 s with the thread). Here each request queues a
    job and waits; one consumer task scans a job, then yields a loop turn, so the loop
    reads every new request into the queue between two scans and the queue, not
    socket order, decides who is next. This is asyncio.Queue plus a loop, not a
    library: no well-kept package schedules CPU-bound work fairly on the loop itself.
    """

    def __init__(self) -> None:
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None

    async def scan(self, flagger, records: list[dict[str, Any]]) -> list[NoteResult]:
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._task = loop.create_task(self._run())
        done = loop.create_future()
        self._queue.put_nowait((flagger, records, done))
        return await done

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            flagger, records, done = await self._queue.get()
            if not done.cancelled():  # the client went away while it waited
                try:
                    done.set_result(list(flagger.scan_many(records)))
                except Exception as exc:  # noqa: BLE001 - handed to the waiting request
                    done.set_exception(exc)
            await asyncio.sleep(0)  # one loop turn between two scans: I/O, replies

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()


def _fast_pipeline(flagger) -> bool:
    """Lexicons + context, with TF-IDF or no model: milliseconds a note. The MiniLM
    model takes ~100 ms a note, which on the loop would hold every other request
    (/healthz too) that long; in a thread torch releases the GIL while it computes."""
    clf = getattr(flagger, "classifier", None)
    return clf is None or getattr(clf, "name", "") == "tfidf"


def _records(notes: list[NoteIn]) -> list[dict[str, Any]]:
    out = []
    for n in notes:
        rec: dict[str, Any] = {"id": n.id, "text": n.text}
        for k in ("case_id", "note_date", "author_role"):
            v = getattr(n, k)
            if v is not None:
                rec[k] = v
        out.append(rec)
    return out


@v1.post(
    "/scan",
    response_model=ScanResponse,
    summary="Scan one note or a batch and suggest concerns",
    responses={**AUTH_ERRORS, **INPUT_ERRORS},
    tags=["scan"],
)
async def scan(
    request: Request,
    body: Annotated[ScanRequest, Body(openapi_examples=_SCAN_EXAMPLES)],
    principal: Principal = Depends(require_role("scanner")),
) -> ScanResponse:
    """Scan notes and return one result per note, in order: the same `NoteResult`
    contract as `flagger scan`. A note that is empty, too long or not text gets a
    result with `status: "error"` and a reason (never its text); the others are still
    scanned. Each concern is a **suggestion** for a Designated Safeguarding Lead, with
    its evidence offsets and an `explanation`. With `queue: true` the suggestions also
    go to the review queue (idempotent per note id and text hash). Nothing is referred.
    """
    app = request.app
    settings = app.state.settings
    notes = body.notes if isinstance(body, ScanBatch) else [NoteIn(**body.model_dump(exclude={"queue"}))]
    if len(notes) > settings.api_max_batch:
        raise HTTPException(413, f"batch has {len(notes)} notes, over the limit of {settings.api_max_batch}")
    flagger = app.state.flagger
    started = time.perf_counter()
    records = _records(notes)
    if _fast_pipeline(flagger) and sum(len(r["text"]) for r in records) <= INLINE_SCAN_CHARS:
        # A note or two, what a case system sends when a note is saved: scanned on the
        # event loop, first come first served (LoopScanner). It takes a few ms, and
        # handing it to a worker thread cost more than that (see INLINE_SCAN_CHARS).
        results: list[NoteResult] = await app.state.loop_scanner.scan(flagger, records)
    else:
        # Bigger batches: in a thread, one scan at a time per worker (the pipeline is
        # CPU-bound; threads would only contend for the GIL), so the loop stays free
        # for /healthz and the small requests.
        async with app.state.scan_lock:
            results = await run_in_threadpool(lambda: list(flagger.scan_many(records)))
    metrics = app.state.metrics
    metrics.scan_latency.observe(time.perf_counter() - started)
    n_concerns = 0
    for r in results:
        metrics.notes.labels(r.status).inc()
        for c in r.concerns:
            metrics.concerns.labels(c.category, c.level).inc()
            n_concerns += 1
    request.state.notes = len(results)
    request.state.concerns = n_concerns
    request.state.errors = sum(r.status == "error" for r in results)
    queued = None
    if body.queue:
        queued = await run_in_threadpool(_enqueue, app.state.store, results, notes, principal)
        n_queued = sum(len(q.suggestion_ids) for q in queued)
        metrics.queued.inc(n_queued)
        request.state.queued = n_queued
    return ScanResponse(results=results, queued=queued)


def _enqueue(store, results: list[NoteResult], notes: list[NoteIn], principal: Principal) -> list[QueueReceipt]:
    receipts = []
    for i, (r, n) in enumerate(zip(results, notes)):
        if r.status == "scanned" and r.concerns:
            ids = store.enqueue(r, n.text, actor=principal.actor, source="api")
            receipts.append(QueueReceipt(index=i, id=r.id, suggestion_ids=ids))
    return receipts


@v1.get("/categories", response_model=CategoriesOut, responses=AUTH_ERRORS, tags=["metadata"],
        summary="The twelve concern categories with definitions and policy sources")
def categories(_: Principal = Depends(require_role())) -> CategoriesOut:
    return CategoriesOut(categories=[
        CategoryOut(key=c.key, name=c.name, definition=c.definition, sources=list(c.sources))
        for c in CATEGORIES.values()
    ])


@v1.get("/lexicons", response_model=LexiconsOut, responses=AUTH_ERRORS, tags=["metadata"],
        summary="Lexicon files in use: versions and indicator counts")
def lexicons(request: Request, _: Principal = Depends(require_role())) -> LexiconsOut:
    flagger = request.app.state.flagger
    lex = flagger.lexicons
    return LexiconsOut(
        version=lex.version,
        context_rules=flagger.versions.context_rules,
        files=[LexiconFileOut(category=l.category, file=l.path, version=l.version,
                              indicators=len(l.indicators), sources=dict(l.sources))
               for _, l in sorted(lex.lexicons.items())],
    )


def models_dir(settings) -> Path:
    return Path(settings.models_dir) if settings.models_dir else Path(str(resources.files("flagger.models")))


def read_models(folder: Path) -> list[ModelOut]:
    """Models listed in ``folder/manifest.json`` with the metrics of their model cards.

    Accepts ``{"models": [{name, version, metrics, ...}]}`` or ``{name: {...}}``; a
    ``<name>.metrics.json`` or ``<name>/metrics.json`` beside it adds evaluation figures.
    A missing or unreadable manifest gives an empty list (the service still runs).
    """
    path = folder / "manifest.json"
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        log.warning("models manifest %s is not readable JSON; listing no models", path.name)
        return []
    entries: list[tuple[str, dict[str, Any]]] = []
    if isinstance(data, dict) and isinstance(data.get("models"), list):
        entries = [(str(e.get("name", f"model-{i}")), e) for i, e in enumerate(data["models"]) if isinstance(e, dict)]
    elif isinstance(data, dict) and isinstance(data.get("models"), dict):
        entries = [(str(k), v) for k, v in data["models"].items() if isinstance(v, dict)]
    elif isinstance(data, dict):
        entries = [(str(k), v) for k, v in data.items() if isinstance(v, dict)]
    out = []
    for name, entry in entries:
        metrics = entry.get("metrics") if isinstance(entry.get("metrics"), dict) else {}
        for cand in (folder / f"{name}.metrics.json", folder / name / "metrics.json"):
            if not metrics and cand.is_file():
                try:
                    loaded = json.loads(cand.read_text(encoding="utf-8"))
                    metrics = loaded if isinstance(loaded, dict) else {}
                except (OSError, ValueError):
                    pass
        details = {k: v for k, v in entry.items() if k not in ("name", "version", "metrics")}
        version = entry.get("version")
        out.append(ModelOut(name=name, version=None if version is None else str(version),
                            metrics=metrics, details=details))
    return out


@v1.get("/models", response_model=ModelsOut, responses=AUTH_ERRORS, tags=["metadata"],
        summary="The model in use and bundled models with their evaluation figures")
def models(request: Request, _: Principal = Depends(require_role())) -> ModelsOut:
    active = request.app.state.flagger.versions.model
    bundled = read_models(models_dir(request.app.state.settings))
    if active is None:
        note = ("none: no trained model is in use; concerns come from the lexicons and context rules only."
                if not bundled else "none: models are bundled but this service runs with lexicons only.")
    else:
        note = f"{active} is fused with the lexicons; figures come from its model card."
    return ModelsOut(active=active or "none", bundled=bundled, note=note)


# -- keys (admin) ---------------------------------------------------------------------

def _utc(t: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; the store writes UTC, so say so (RFC 3339).
    return t.replace(tzinfo=timezone.utc) if t is not None and t.tzinfo is None else t


def _key_out(k) -> KeyOut:
    return KeyOut(key_id=k.key_id, name=k.name, role=k.role, created_at=_utc(k.created_at),
                  revoked_at=_utc(k.revoked_at), last_used_at=_utc(k.last_used_at))


@v1.get("/keys", response_model=KeysOut, responses=AUTH_ERRORS, tags=["keys"], summary="List API keys (admin)")
def list_keys(request: Request, _: Principal = Depends(require_role("admin"))) -> KeysOut:
    return KeysOut(keys=[_key_out(k) for k in request.app.state.store.list_api_keys()])


@v1.post("/keys", response_model=KeyCreated, status_code=status.HTTP_201_CREATED,
         responses={**AUTH_ERRORS, **INPUT_ERRORS}, tags=["keys"], summary="Create an API key (admin)")
def create_key(request: Request, body: KeyCreate, principal: Principal = Depends(require_role("admin"))) -> KeyCreated:
    """The token is in this response only; the store keeps its hash."""
    store = request.app.state.store
    key_id, token = store.create_api_key(body.name, body.role, actor=principal.actor)
    k = next(k for k in store.list_api_keys() if k.key_id == key_id)
    return KeyCreated(**_key_out(k).model_dump(), token=token)


@v1.delete("/keys/{key_id}", response_model=KeyOut,
           responses={**AUTH_ERRORS, 404: {"model": ErrorOut, "description": "No such key."}},
           tags=["keys"], summary="Revoke an API key (admin)")
def revoke_key(request: Request, key_id: str, principal: Principal = Depends(require_role("admin"))) -> KeyOut:
    store = request.app.state.store
    store.revoke_api_key(key_id, actor=principal.actor)  # NotFoundError -> 404 at the edge
    request.app.state.key_cache.forget_key(key_id)
    return _key_out(next(k for k in store.list_api_keys() if k.key_id == key_id))


# -- operations -----------------------------------------------------------------------

@ops.get("/healthz", response_model=HealthOut, tags=["operations"], summary="Alive")
def healthz() -> HealthOut:
    return HealthOut()


@ops.get("/readyz", response_model=ReadyOut, tags=["operations"], summary="Pipeline and store loaded",
         responses={503: {"model": ReadyOut, "description": "Not ready yet (or no longer)."}})
def readyz(request: Request, response: Response) -> ReadyOut:
    state = request.app.state
    flagger = getattr(state, "flagger", None)
    store = getattr(state, "store", None)
    store_ok = False
    if store is not None:
        try:
            with store.engine.connect() as conn:
                conn.execute(sql_text("SELECT 1"))
            store_ok = True
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            log.warning("readiness: store check failed (%s)", type(exc).__name__)
    ready = flagger is not None and store_ok
    if not ready:
        response.status_code = 503
    return ReadyOut(status="ready" if ready else "not ready", pipeline=flagger is not None, store=store_ok,
                    versions=flagger.versions if flagger is not None else None)


@ops.get("/metrics", tags=["operations"], summary="Prometheus metrics (no note text, no note ids)",
         response_class=Response,
         responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                          "description": "Prometheus text exposition format."}})
def metrics(request: Request) -> Response:
    body, content_type = request.app.state.metrics.exposition()
    return Response(content=body, media_type=content_type)
