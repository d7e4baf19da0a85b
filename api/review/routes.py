"""Review pages (/review) and the JSON review API (/v1/review).

Who is asking: a browser session (cookie set at /review/login; every POST carries the
session's CSRF token) or, for JSON only, an API key with role ``reviewer`` or ``admin``
(``Authorization: Bearer ...``). API keys may read; decisions need a named person, so
they need a session. Per-category visibility is applied by the store's queries, so
pages and JSON show the same things.

Errors map from the store's typed errors: NotFound 404, PermissionDenied 403,
Conflict 409 ("already decided by X"), other StoreError 400. Messages never hold note text.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi import Path as FastApiPath
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from flagger import review as rv
from flagger.categories import CATEGORIES, CATEGORY_KEYS
from flagger.errors import ConflictError, NotFoundError, PermissionDenied, StoreError
from flagger.schema import SUGGESTION_NOTICE
from flagger.settings import Settings, get_settings
from flagger.store import ReviewStore, Viewer

log = logging.getLogger(__name__)

COOKIE = "flagger_review"
LOGIN_CSRF_COOKIE = "flagger_login_csrf"
NEVER_REFERS = ("flagger never refers anyone and never contacts any agency. Every concern here is a "
                "suggestion until a named reviewer decides; referrals are made by people, through your "
                "local procedure.")

templates = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
templates.env.globals.update(CATEGORIES=CATEGORIES, CATEGORY_KEYS=CATEGORY_KEYS, LEVELS=rv.LEVELS,
                             REJECT_REASONS=rv.REJECT_REASONS, NEVER_REFERS=NEVER_REFERS)

page_router = APIRouter(prefix="/review", include_in_schema=False)
json_router = APIRouter(prefix="/v1/review", tags=["review"])

PAGE_HEADERS = {
    # Pages hold note text: no caching, no framing, scripts and styles only from here.
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

# Ids in paths are bounded to the 32-bit database integer range: a larger id is
# a 422 from validation instead of an OverflowError (a 500) in the driver.
DbId = Annotated[int, FastApiPath(ge=1, le=2**31 - 1)]


# --- plumbing ---------------------------------------------------------------------------

def settings_of(request: Request) -> Settings:
    return getattr(request.app.state, "settings", None) or get_settings()


def store_of(request: Request) -> ReviewStore:
    """The service's store (``app.state.store``), else one built once from the settings."""
    st = getattr(request.app.state, "store", None)
    if st is not None:
        return st
    st = getattr(request.app.state, "review_store", None)
    if st is None:
        st = ReviewStore(settings_of(request).database_url)
        request.app.state.review_store = st
    return st


@dataclass
class Principal:
    viewer: Viewer
    csrf: str | None   # None for API keys (no cookie, so no CSRF risk)
    via: str           # "session" | "key"


def _principal(request: Request) -> Principal | None:
    store = store_of(request)
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        key = store.verify_api_key(auth[7:].strip())
        if key is None or key.role not in ("reviewer", "admin"):
            return None
        return Principal(Viewer.for_key(key), None, "key")
    token = request.cookies.get(COOKIE)
    found = store.session_viewer(token, team_hidden=settings_of(request).review_team_hidden_categories) \
        if token else None
    if found is None:
        return None
    return Principal(found[0], found[1], "session")


def json_principal(request: Request) -> Principal:
    p = _principal(request)
    if p is None:
        raise HTTPException(401, "sign in, or send an API key with role reviewer",
                            headers={"WWW-Authenticate": "Bearer"})
    return p


def _check_csrf(p: Principal, token: str | None) -> None:
    if p.via == "key":
        return
    if not token or not p.csrf or not hmac.compare_digest(token, p.csrf):
        raise HTTPException(403, "missing or wrong CSRF token; reload the page and try again")


def _http(exc: StoreError) -> HTTPException:
    status = (404 if isinstance(exc, NotFoundError) else 403 if isinstance(exc, PermissionDenied)
              else 409 if isinstance(exc, ConflictError) else 400)
    return HTTPException(status, exc.message)


def _day(s: str | None, *, end: bool = False) -> datetime | None:
    if not s:
        return None
    try:
        d = date.fromisoformat(s)
    except ValueError:
        raise HTTPException(400, f"date {s[:20]!r} is not YYYY-MM-DD") from None
    t = datetime.combine(d, time.min, tzinfo=timezone.utc)
    return t + timedelta(days=1) if end else t


def _filters(category, level, team, case, since, until) -> dict[str, Any]:
    if category and category not in CATEGORY_KEYS:
        raise HTTPException(400, f"unknown category {category[:40]!r}")
    if level and level not in rv.LEVELS:
        raise HTTPException(400, f"unknown level {level[:20]!r}")
    return dict(category=category or None, level=level or None, team=team or None, case_id=case or None,
                since=_day(since), until=_day(until, end=True))


# --- JSON API ------------------------------------------------------------------------------

@json_router.get("/queue", response_model=rv.QueuePage, summary="Suggestions awaiting review")
def api_queue(request: Request, category: str | None = None, level: str | None = None, team: str | None = None,
              case: str | None = None, since: str | None = None, until: str | None = None,
              p: Principal = Depends(json_principal)) -> rv.QueuePage:
    return store_of(request).queue(p.viewer, **_filters(category, level, team, case, since, until))


@json_router.get("/notes/{note_id}", response_model=rv.NoteView, summary="One note with its suggestions (audited)")
def api_note(request: Request, note_id: DbId, p: Principal = Depends(json_principal)) -> rv.NoteView:
    try:
        return store_of(request).note_view(note_id, p.viewer)
    except StoreError as exc:
        raise _http(exc) from None


@json_router.post("/suggestions/{suggestion_id}/decision", response_model=rv.SuggestionView,
                  summary="Decide one suggestion (named reviewers only; 409 if already decided)")
def api_decide(request: Request, suggestion_id: DbId, body: rv.DecisionIn,
               p: Principal = Depends(json_principal)) -> rv.SuggestionView:
    _check_csrf(p, request.headers.get("x-csrf-token"))
    try:
        return store_of(request).decide(
            suggestion_id, p.viewer, body,
            second_review_high_reject=settings_of(request).review_second_review_high_reject)
    except StoreError as exc:
        raise _http(exc) from None


@json_router.post("/notes/{note_id}/concerns", response_model=rv.SuggestionView, status_code=201,
                  summary="Add a concern the flagger missed, by offsets into the note")
def api_add(request: Request, note_id: DbId, body: rv.AddConcernIn,
            p: Principal = Depends(json_principal)) -> rv.SuggestionView:
    _check_csrf(p, request.headers.get("x-csrf-token"))
    try:
        return store_of(request).add_concern(note_id, p.viewer, body)
    except StoreError as exc:
        raise _http(exc) from None


@json_router.get("/cases/{case_id}/timeline", response_model=list[rv.CaseEntry], summary="One case over time")
def api_case(request: Request, case_id: str, p: Principal = Depends(json_principal)) -> list[rv.CaseEntry]:
    try:
        return store_of(request).case_timeline(case_id, p.viewer)
    except StoreError as exc:
        raise _http(exc) from None


@json_router.get("/suggestions/{suggestion_id}/chronology", summary="Draft chronology entry (plain text)")
def api_chronology(request: Request, suggestion_id: DbId, p: Principal = Depends(json_principal)) -> dict:
    try:
        return {"text": store_of(request).chronology(suggestion_id, p.viewer), "draft": True}
    except StoreError as exc:
        raise _http(exc) from None


# --- pages ------------------------------------------------------------------------------------

def _page(request: Request, name: str, ctx: dict[str, Any], status: int = 200) -> HTMLResponse:
    s = settings_of(request)
    base = {"local_procedure": s.review_local_procedure, "notice": SUGGESTION_NOTICE}
    resp = templates.TemplateResponse(request, name, {**base, **ctx}, status_code=status)
    resp.headers.update(PAGE_HEADERS)
    return resp


def _login_redirect(request: Request) -> RedirectResponse:
    nxt = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/review/login?next={quote(nxt)}", status_code=303)


def _safe_next(nxt: str | None) -> str:
    # Only our own pages: no open redirect to another site.
    if nxt and nxt.startswith("/review") and not nxt.startswith("//") and "\\" not in nxt:
        return nxt
    return "/review"


def _set_cookie(resp: Response, request: Request, name: str, value: str, *, max_age: int | None) -> None:
    s = settings_of(request)
    resp.set_cookie(name, value, max_age=max_age, httponly=True, secure=s.review_cookie_secure,
                    samesite=s.review_cookie_samesite, path="/")


@page_router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str | None = None) -> Response:
    token = secrets.token_urlsafe(24)
    resp = _page(request, "login.html", {"login_csrf": token, "next": _safe_next(next), "error": None})
    _set_cookie(resp, request, LOGIN_CSRF_COOKIE, token, max_age=3600)
    return resp


@page_router.post("/login", response_class=HTMLResponse)
def login_submit(request: Request, username: str = Form(..., max_length=100),
                 password: str = Form(..., max_length=1000), csrf_token: str = Form(""),
                 next: str = Form("/review")) -> Response:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    store = store_of(request)
    if not expected or not hmac.compare_digest(expected, csrf_token):
        raise HTTPException(403, "login form expired; reload the page and try again")
    user = store.authenticate(username, password)
    if user is None:
        token = secrets.token_urlsafe(24)
        resp = _page(request, "login.html", {"login_csrf": token, "next": _safe_next(next),
                                             "error": "Wrong username or password, or the account is disabled."},
                     status=401)
        _set_cookie(resp, request, LOGIN_CSRF_COOKIE, token, max_age=3600)
        return resp
    hours = settings_of(request).review_session_hours
    token, _csrf = store.create_session(user.id, hours=hours)
    resp = RedirectResponse(_safe_next(next), status_code=303)
    _set_cookie(resp, request, COOKIE, token, max_age=hours * 3600)
    resp.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
    return resp


def page_principal(request: Request) -> Principal | None:
    p = _principal(request)
    return p if p is not None and p.via == "session" else None


@page_router.post("/logout")
def logout(request: Request, csrf_token: str = Form("")) -> Response:
    p = page_principal(request)
    if p is not None:
        _check_csrf(p, csrf_token)
        store_of(request).end_session(request.cookies.get(COOKIE, ""))
    resp = RedirectResponse("/review/login", status_code=303)
    resp.delete_cookie(COOKIE, path="/")
    return resp


@page_router.get("", response_class=HTMLResponse)
@page_router.get("/", response_class=HTMLResponse, include_in_schema=False)
def queue_page(request: Request, category: str | None = None, level: str | None = None, team: str | None = None,
               case: str | None = None, since: str | None = None, until: str | None = None) -> Response:
    p = page_principal(request)
    if p is None:
        return _login_redirect(request)
    f = _filters(category, level, team, case, since, until)
    page = store_of(request).queue(p.viewer, **f)
    args = {"category": category or "", "level": level or "", "team": team or "", "case": case or "",
            "since": since or "", "until": until or ""}
    return _page(request, "queue.html", {"me": p, "page": page, "f": args,
                                         "visible_categories": [c for c in CATEGORY_KEYS if p.viewer.can_see(c)],
                                         "filter_qs": lambda **kw: urlencode({k: v for k, v in {**args, **kw}.items()
                                                                              if v})})


def _note_ctx(request: Request, p: Principal, note_id: int) -> dict[str, Any]:
    store = store_of(request)
    view = store.note_view(note_id, p.viewer)
    spans = []
    for sg in view.suggestions:
        for e in sg.evidence:
            supp = bool(e.get("suppressed"))
            spans.append(rv.Span(
                e["start"], e["end"], sg.effective_category,
                kind="suppressed" if supp else ("reviewer" if sg.origin == "reviewer" else "concern"),
                label=(f"{sg.effective_category} · {sg.effective_level}" if not supp
                       else f"set aside: {_why_set_aside(e)}"),
                note=e.get("indicator", ""), ref=f"s{sg.id}"))
    for e in view.suppressed:
        spans.append(rv.Span(e["start"], e["end"], e.get("category", ""), kind="suppressed",
                             label=f"set aside ({e.get('category')}): {_why_set_aside(e)}",
                             note=e.get("indicator", "")))
    segs = rv.segments(view.text, spans) if view.text is not None else []
    # The queue order gives "next" and "previous" notes for the keyboard.
    order = []
    for it in store.queue(p.viewer).items:
        if it.note_id not in order:
            order.append(it.note_id)
    prev_id = next_id = None
    if note_id in order:
        i = order.index(note_id)
        prev_id = order[i - 1] if i > 0 else None
        next_id = order[i + 1] if i + 1 < len(order) else None
    elif order:
        next_id = order[0]
    first_reviewer = {sg.id: next((d.by_user_id for d in reversed(sg.decisions) if d.action == "reject"), None)
                      for sg in view.suggestions}
    return {"me": p, "note": view, "segments": segs, "prev_id": prev_id, "next_id": next_id,
            "first_reviewer": first_reviewer, "why_set_aside": _why_set_aside,
            "second_review": settings_of(request).review_second_review_high_reject,
            "visible_categories": [c for c in CATEGORY_KEYS if p.viewer.can_see(c)]}


def _why_set_aside(e: dict[str, Any]) -> str:
    flags = e.get("context") or []
    if flags:
        return ", ".join(f"{c.get('attribute')} ({c.get('rule')})" for c in flags)
    return "too weak on its own"


@page_router.get("/notes/{note_id}", response_class=HTMLResponse)
def note_page(request: Request, note_id: DbId, msg: str | None = None) -> Response:
    p = page_principal(request)
    if p is None:
        return _login_redirect(request)
    try:
        ctx = _note_ctx(request, p, note_id)
    except StoreError as exc:
        return _page(request, "error.html", {"me": p, "message": exc.message}, status=_http(exc).status_code)
    return _page(request, "note.html", {**ctx, "message": (msg or "")[:200], "error": None})


@page_router.post("/suggestions/{suggestion_id}/decide", response_class=HTMLResponse)
def decide_form(request: Request, suggestion_id: DbId, note_id: int = Form(...), action: str = Form(...),
                version: int | None = Form(None), reason: str | None = Form(None),
                comment: str | None = Form(None, max_length=4000), new_category: str | None = Form(None),
                new_level: str | None = Form(None), agree: str | None = Form(None),
                csrf_token: str = Form("")) -> Response:
    p = page_principal(request)
    if p is None:
        return _login_redirect(request)
    _check_csrf(p, csrf_token)
    try:
        d = rv.DecisionIn(action=action, version=version, reason=reason or None, comment=comment or None,
                          new_category=new_category or None, new_level=new_level or None,
                          agree=None if agree is None else agree == "yes")
        sv = store_of(request).decide(suggestion_id, p.viewer, d,
                                      second_review_high_reject=settings_of(request).review_second_review_high_reject)
    except ValidationError:
        return _note_error(request, p, note_id, "That decision was not complete: choose an action.", 400)
    except StoreError as exc:
        return _note_error(request, p, note_id, exc.message, _http(exc).status_code)
    done = {"confirmed": "Confirmed", "rejected": "Rejected", "recategorised": "Category/level changed",
            "awaiting_second_review": "Rejection recorded; it now needs a second reviewer's sign-off",
            "pending": "Returned to the queue"}.get(sv.state, sv.state)
    msg = f"{done}: {CATEGORIES[sv.category].name if sv.category in CATEGORIES else sv.category}."
    return RedirectResponse(f"/review/notes/{note_id}?{urlencode({'msg': msg})}#s{sv.id}", status_code=303)


def _note_error(request: Request, p: Principal, note_id: int, message: str, status: int) -> Response:
    try:
        ctx = _note_ctx(request, p, note_id)
    except StoreError as exc:
        return _page(request, "error.html", {"me": p, "message": exc.message}, status=_http(exc).status_code)
    return _page(request, "note.html", {**ctx, "message": "", "error": message}, status=status)


@page_router.post("/notes/{note_id}/concerns", response_class=HTMLResponse)
def add_form(request: Request, note_id: DbId, start: int = Form(...), end: int = Form(...),
             category: str = Form(...), level: str = Form("medium"),
             comment: str | None = Form(None, max_length=4000), csrf_token: str = Form("")) -> Response:
    p = page_principal(request)
    if p is None:
        return _login_redirect(request)
    _check_csrf(p, csrf_token)
    try:
        sv = store_of(request).add_concern(note_id, p.viewer, rv.AddConcernIn(
            start=start, end=end, category=category, level=level, comment=comment or None))
    except ValidationError:
        return _note_error(request, p, note_id, "Select some text in the note and choose a category and level.", 400)
    except StoreError as exc:
        return _note_error(request, p, note_id, exc.message, _http(exc).status_code)
    msg = f"Added a {sv.category} concern from your selection."
    return RedirectResponse(f"/review/notes/{note_id}?{urlencode({'msg': msg})}#s{sv.id}", status_code=303)


@page_router.get("/cases/{case_id}", response_class=HTMLResponse)
def case_page(request: Request, case_id: str) -> Response:
    p = page_principal(request)
    if p is None:
        return _login_redirect(request)
    try:
        entries = store_of(request).case_timeline(case_id, p.viewer)
    except StoreError as exc:
        return _page(request, "error.html", {"me": p, "message": exc.message}, status=_http(exc).status_code)
    points = [{"when": e.when, "category": sg.effective_category, "level": sg.effective_level, "state": sg.state}
              for e in entries for sg in e.suggestions]
    return _page(request, "case.html", {"me": p, "case_id": case_id, "entries": entries,
                                        "svg": rv.timeline_svg(points)})


@page_router.get("/suggestions/{suggestion_id}/chronology", response_class=HTMLResponse)
def chronology_page(request: Request, suggestion_id: DbId) -> Response:
    p = page_principal(request)
    if p is None:
        return _login_redirect(request)
    try:
        text = store_of(request).chronology(suggestion_id, p.viewer)
    except StoreError as exc:
        return _page(request, "error.html", {"me": p, "message": exc.message}, status=_http(exc).status_code)
    return _page(request, "chronology.html", {"me": p, "text": text, "suggestion_id": suggestion_id})


@page_router.get("/help", response_class=PlainTextResponse)
def help_text() -> str:
    return "Keys: j/n next, k/p previous, c confirm, r reject, ? help. " + NEVER_REFERS
