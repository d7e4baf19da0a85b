"""Pure review logic: decision rules, highlight segments, timeline chart, chronology text.

No database and no web code here: the store (``flagger.store``) and the review pages
(``api/review``) call these functions. Everything is a function of its arguments, so
it is tested with tables of inputs and expected outputs.

Nothing here refers anyone or decides anything: a state changes only when a named
user's decision is applied by the store.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Literal

from pydantic import BaseModel, Field

from .categories import CATEGORY_KEYS
from .errors import StoreError

LEVELS = ("low", "medium", "high")
LEVEL_RANK = {"low": 1, "medium": 2, "high": 3}

REJECT_REASONS: dict[str, str] = {
    "negated": "Negated (the note says it did not happen)",
    "historical": "Historical (past, no current risk)",
    "not_about_child": "Not about this child",
    "wrong_category": "Wrong category",
    "not_a_concern": "Not a concern",
    "other": "Other (say why)",
}

ACTIONS = ("confirm", "reject", "recategorise", "second_review")
FINAL_STATES = ("confirmed", "rejected", "recategorised")
OPEN_STATES = ("pending", "awaiting_second_review")


# --- decisions ----------------------------------------------------------------------

class DecisionIn(BaseModel):
    """A reviewer's decision on one suggestion, as the page or JSON client sends it.

    ``version`` is the suggestion version the reviewer saw; a decision on a stale
    version is refused (someone else decided first).
    """

    action: Literal["confirm", "reject", "recategorise", "second_review"]
    version: int | None = Field(None, ge=1)
    reason: str | None = None
    comment: str | None = Field(None, max_length=4000)
    new_category: str | None = None
    new_level: str | None = None
    agree: bool | None = Field(None, description="second_review only: agree with the rejection?")


class AddConcernIn(BaseModel):
    """A concern the flagger missed, added by a reviewer from a text selection."""

    start: int = Field(ge=0)
    end: int = Field(ge=0)
    category: str
    level: Literal["low", "medium", "high"] = "medium"
    comment: str | None = Field(None, max_length=4000)


def check_decision(d: DecisionIn) -> None:
    """Refuse a decision whose fields do not fit its action.

    Raises:
        StoreError: naming the field that is wrong (never note text).
    """
    if d.action == "reject":
        if d.reason not in REJECT_REASONS:
            raise StoreError(f"reject needs a reason, one of: {', '.join(REJECT_REASONS)}")
        if d.reason == "other" and not (d.comment or "").strip():
            raise StoreError("reason 'other' needs a comment saying why")
    if d.action == "recategorise":
        if d.new_category is None and d.new_level is None:
            raise StoreError("recategorise needs a new category or a new level")
        if d.new_category is not None and d.new_category not in CATEGORY_KEYS:
            raise StoreError(f"unknown category {d.new_category!r}")
        if d.new_level is not None and d.new_level not in LEVELS:
            raise StoreError(f"unknown level {d.new_level!r}")
    if d.action == "second_review" and d.agree is None:
        raise StoreError("second_review needs agree=true (reject stands) or agree=false (back to the queue)")


def next_state(*, state: str, action: str, level: str, second_review_high_reject: bool,
               user_id: int, first_reviewer_id: int | None, agree: bool | None = None,
               decided_by: str | None = None) -> str:
    """The state a suggestion moves to when ``user_id`` applies ``action``.

    Args:
        state: the current state.
        level: the suggestion's level (a high one may need a second reviewer to reject).
        second_review_high_reject: the setting that asks for a second sign-off.
        first_reviewer_id: who asked for the second review (only for second_review).
        decided_by: display name of whoever decided last, for the conflict message.

    Raises:
        ConflictError: the item is already decided (or awaits a second reviewer).
        PermissionDenied: the first reviewer tries to sign off their own rejection.
        StoreError: the action does not apply in this state.
    """
    from .errors import ConflictError, PermissionDenied

    who = f" by {decided_by}" if decided_by else ""
    if state in FINAL_STATES:
        raise ConflictError(f"already decided{who} ({state})")
    if action == "second_review":
        if state != "awaiting_second_review":
            raise StoreError("this item is not awaiting a second review")
        if user_id == first_reviewer_id:
            raise PermissionDenied("a second review must be done by a different reviewer")
        return "rejected" if agree else "pending"
    if state == "awaiting_second_review":
        raise ConflictError(f"already decided{who}: awaiting a second reviewer's sign-off")
    if action == "confirm":
        return "confirmed"
    if action == "recategorise":
        return "recategorised"
    if action == "reject":
        if second_review_high_reject and level == "high":
            return "awaiting_second_review"
        return "rejected"
    raise StoreError(f"unknown action {action!r}")


def check_span(text_len: int, start: int, end: int) -> None:
    """Offsets of a reviewer's selection must lie inside the note.

    Raises:
        StoreError: naming the offsets and the note length (never the text).
    """
    if not (0 <= start < end <= text_len):
        raise StoreError(f"selection {start}-{end} is not inside the note (0-{text_len})")


# --- highlight segments -----------------------------------------------------------------

@dataclass(frozen=True)
class Span:
    start: int
    end: int
    category: str
    kind: str = "concern"  # concern | suppressed | reviewer
    label: str = ""        # what the visible tag says
    note: str = ""         # longer explanation (title / tooltip)
    ref: str = ""          # id of the concern the span belongs to


@dataclass(frozen=True)
class Segment:
    start: int
    end: int
    text: str
    spans: tuple[Span, ...]      # spans covering this segment
    closing: tuple[Span, ...]    # spans that end at this segment's end (tag goes here)


def segments(text: str, spans: Iterable[Span]) -> list[Segment]:
    """Split ``text`` at every span boundary, so overlapping spans can all be shown.

    Spans outside the text are clipped; empty ones are dropped. Returns segments that
    cover the whole text in order; joining their ``text`` gives back ``text``.
    """
    n = len(text)
    kept = [s for s in spans if 0 <= s.start < s.end <= n]
    cuts = sorted({0, n, *(s.start for s in kept), *(s.end for s in kept)})
    out = []
    for a, b in zip(cuts, cuts[1:]):
        cover = tuple(s for s in kept if s.start <= a and b <= s.end)
        closing = tuple(s for s in cover if s.end == b)
        out.append(Segment(a, b, text[a:b], cover, closing))
    return out


# --- durations, waiting time ----------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+)\s*([dhw])\s*$")


def parse_duration(s: str) -> timedelta:
    """``90d``, ``12h`` or ``2w`` as a timedelta.

    Raises:
        ValueError: for anything else.
    """
    m = _DURATION.match(s or "")
    if not m:
        raise ValueError(f"{s!r} is not a duration like 90d, 12h or 2w")
    n, unit = int(m.group(1)), m.group(2)
    return {"d": timedelta(days=n), "h": timedelta(hours=n), "w": timedelta(weeks=n)}[unit]


def waited(since: datetime, now: datetime) -> str:
    """How long an item has waited, for people: '3d 4h', '5h', '12m'."""
    if since.tzinfo is None:
        since = since.replace(tzinfo=timezone.utc)
    secs = max(0, int((now - since).total_seconds()))
    d, rem = divmod(secs, 86400)
    h, rem = divmod(rem, 3600)
    m = rem // 60
    if d:
        return f"{d}d {h}h"
    if h:
        return f"{h}h {m}m"
    return f"{m}m"


def parse_when(note_date: str | None, fallback: datetime) -> datetime:
    """The date a note is about: its ``note_date`` (ISO) when readable, else ``fallback``."""
    if note_date:
        try:
            d = datetime.fromisoformat(note_date.strip().replace("Z", "+00:00"))
            return d if d.tzinfo else d.replace(tzinfo=timezone.utc)
        except ValueError:
            pass
    return fallback if fallback.tzinfo else fallback.replace(tzinfo=timezone.utc)


# --- case timeline chart ------------------------------------------------------------------------

STATE_MARK = {
    "pending": "open circle",
    "awaiting_second_review": "open circle",
    "confirmed": "filled circle",
    "recategorised": "filled circle",
    "rejected": "cross",
}


def timeline_svg(points: list[dict[str, Any]], *, width: int = 760, row_h: int = 28) -> str:
    """An inline SVG chart of one case's concerns over time (no scripts, no CDN).

    Args:
        points: dicts with ``when`` (datetime), ``category``, ``level`` and ``state``.

    Returns:
        SVG markup: one row per category, a mark per suggestion (filled = confirmed,
        open = awaiting review, cross = rejected) and a step line of the cumulative
        number of confirmed concerns, so a building pattern is visible.
    """
    esc = html.escape
    cats = sorted({p["category"] for p in points}, key=lambda c: CATEGORY_KEYS.index(c)
                  if c in CATEGORY_KEYS else 99)
    left, right, top = 150, 20, 20
    height = top + row_h * max(1, len(cats)) + 70
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="tl-title tl-desc" '
             f'viewBox="0 0 {width} {height}" width="100%" class="timeline">',
             '<title id="tl-title">Concerns over time for this case</title>',
             f'<desc id="tl-desc">{len(points)} suggestions in {len(cats)} categories. '
             'Filled circle: confirmed; open circle: awaiting review; cross: rejected. '
             'The line counts confirmed concerns so far.</desc>']
    if not points:
        parts.append(f'<text x="{left}" y="{top + 14}">No suggestions for this case.</text></svg>')
        return "".join(parts)
    times = sorted(p["when"] for p in points)
    t0, t1 = times[0], times[-1]
    span = max((t1 - t0).total_seconds(), 1.0)
    plot_w = width - left - right

    def x(t: datetime) -> float:
        return left + (plot_w * (t - t0).total_seconds() / span if t1 > t0 else plot_w / 2)

    for i, c in enumerate(cats):
        y = top + row_h * i + row_h / 2
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y}" y2="{y}" class="grid"/>')
        parts.append(f'<text x="{left - 8}" y="{y + 4}" text-anchor="end" class="cat">{esc(c)}</text>')
    for p in sorted(points, key=lambda p: p["when"]):
        y = top + row_h * cats.index(p["category"]) + row_h / 2
        cx = x(p["when"])
        r = {"low": 4, "medium": 6, "high": 8}.get(p["level"], 5)
        tip = esc(f'{p["when"]:%Y-%m-%d} {p["category"]} ({p["level"]}): {p["state"]}')
        if p["state"] == "rejected":
            parts.append(f'<g class="mark rejected"><title>{tip}</title>'
                         f'<line x1="{cx - r}" y1="{y - r}" x2="{cx + r}" y2="{y + r}"/>'
                         f'<line x1="{cx - r}" y1="{y + r}" x2="{cx + r}" y2="{y - r}"/></g>')
        else:
            cls = "confirmed" if p["state"] in ("confirmed", "recategorised") else "open"
            parts.append(f'<circle class="mark {cls} lvl-{esc(p["level"])}" cx="{cx:.1f}" cy="{y}" r="{r}">'
                         f'<title>{tip}</title></circle>')
    # Cumulative confirmed concerns as a step line along the bottom band.
    base = top + row_h * len(cats) + 50
    confirmed = [p["when"] for p in points if p["state"] in ("confirmed", "recategorised")]
    confirmed.sort()
    total = max(1, len(confirmed))
    pts = [f"{left},{base}"]
    for k, t in enumerate(confirmed, 1):
        prev_y = base - 40 * (k - 1) / total
        pts.append(f"{x(t):.1f},{prev_y:.1f}")
        pts.append(f"{x(t):.1f},{base - 40 * k / total:.1f}")
    pts.append(f"{width - right},{base - 40 * len(confirmed) / total:.1f}")
    parts.append(f'<polyline class="cumulative" fill="none" points="{" ".join(pts)}"/>')
    parts.append(f'<text x="{left - 8}" y="{base - 16}" text-anchor="end" class="cat">confirmed: '
                 f'{len(confirmed)}</text>')
    parts.append(f'<text x="{left}" y="{height - 4}" class="axis">{t0:%Y-%m-%d}</text>')
    parts.append(f'<text x="{width - right}" y="{height - 4}" text-anchor="end" class="axis">{t1:%Y-%m-%d}</text>')
    parts.append("</svg>")
    return "".join(parts)


# --- chronology ----------------------------------------------------------------------------------

def chronology_entry(*, when: datetime, note_key: str, category_name: str, level: str,
                     evidence: list[str], decided_by: str, decided_at: datetime,
                     comment: str | None) -> str:
    """A draft chronology entry for a confirmed concern: plain text a person copies in.

    It is a draft: the reviewer checks and edits it before it goes in the case record.
    """
    quoted = "; ".join(f'"{e}"' for e in evidence) or "(see note)"
    lines = [
        f"{when:%d/%m/%Y} - {category_name} ({level}) noted in case note {note_key}.",
        f"Evidence in the note: {quoted}.",
        f"Reviewed and confirmed by {decided_by} on {decided_at:%d/%m/%Y %H:%M} UTC.",
    ]
    if comment:
        lines.append(f"Reviewer's comment: {comment}")
    lines.append("[DRAFT suggested by flagger - check and edit before adding to the case record. "
                 "flagger has not referred this to anyone.]")
    return "\n".join(lines)


# --- learning from decisions -----------------------------------------------------------------------

def indicator_reason_counts(rows: Iterable[tuple[list[str], str, str | None]]) -> dict[str, dict[str, int]]:
    """Per indicator, how often its suggestions were confirmed and why they were rejected.

    Args:
        rows: ``(indicators, final_state, reject_reason)`` per decided suggestion.

    Returns:
        ``{indicator: {"confirmed": n, "rejected": n, "<reason>": n, ...}}``.
    """
    out: dict[str, dict[str, int]] = {}
    for indicators, state, reason in rows:
        for ind in sorted(set(indicators)):
            c = out.setdefault(ind, {"confirmed": 0, "rejected": 0})
            if state in ("confirmed", "recategorised"):
                c["confirmed"] += 1
            elif state == "rejected":
                c["rejected"] += 1
                key = reason or "unknown"
                c[key] = c.get(key, 0) + 1
    return out


def format_indicator_table(counts: dict[str, dict[str, int]]) -> str:
    """A plain-text table, noisiest indicators (most rejections) first."""
    reasons = list(REJECT_REASONS)
    head = ["indicator", "confirmed", "rejected", "reject_rate", *reasons]
    rows = []
    for ind, c in sorted(counts.items(), key=lambda kv: (-kv[1]["rejected"], kv[0])):
        n = c["confirmed"] + c["rejected"]
        rate = f"{c['rejected'] / n:.2f}" if n else "-"
        rows.append([ind, str(c["confirmed"]), str(c["rejected"]), rate, *(str(c.get(r, 0)) for r in reasons)])
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*head), *(fmt.format(*r) for r in rows)])


# --- privacy: scrubbing note text from stored results ----------------------------------------------

def scrub_evidence(ev: dict[str, Any]) -> dict[str, Any]:
    """A copy of one evidence dict with the note's words removed, offsets and ids kept."""
    out = dict(ev)
    out["text"] = ""
    out["context"] = [{**c, "trigger": ""} for c in ev.get("context") or []]
    return out


def scrub_result(result: dict[str, Any]) -> dict[str, Any]:
    """A copy of a stored NoteResult dict with every fragment of note text removed.

    Evidence text, context triggers and the ``why`` sentences (which quote the note) are
    blanked; categories, levels, scores, offsets, indicator ids and versions are kept so
    the decision record still makes sense after ``purge``.
    """
    out = dict(result)
    out["concerns"] = [
        {**c, "why": "", "evidence": [scrub_evidence(e) for e in c.get("evidence") or []]}
        for c in result.get("concerns") or []
    ]
    out["suppressed"] = [scrub_evidence(e) for e in result.get("suppressed") or []]
    return out


# --- views: what the store hands to pages and JSON clients -------------------------------------------

class DecisionView(BaseModel):
    id: int
    action: str
    reason: str | None = None
    comment: str | None = None
    new_category: str | None = None
    new_level: str | None = None
    by: str = Field(description="Display name of the person who decided.")
    by_username: str
    by_user_id: int | None = None
    at: datetime
    versions_seen: dict[str, Any] = Field(default_factory=dict)


class SuggestionView(BaseModel):
    id: int
    note_id: int
    category: str
    level: str
    effective_category: str = Field(description="Category after any recategorise decision.")
    effective_level: str
    score: float
    origin: str
    state: str
    version: int
    evidence: list[dict[str, Any]]
    explanation: dict[str, Any]
    why: str
    lexicon_version: str | None = None
    model_version: str | None = None
    created_at: datetime
    decided_at: datetime | None = None
    decided_by: str | None = None
    decisions: list[DecisionView] = Field(default_factory=list)


class QueueItem(BaseModel):
    suggestion_id: int
    note_id: int
    note_key: str
    case_id: str | None = None
    team: str | None = None
    note_date: str | None = None
    category: str
    level: str
    score: float
    state: str
    origin: str
    version: int
    created_at: datetime
    waited: str
    evidence_count: int


class QueuePage(BaseModel):
    items: list[QueueItem]
    counts: dict[str, int] = Field(description="Open suggestions per category (same filters, any category).")
    total: int


class CaseEntry(BaseModel):
    note_id: int
    note_key: str
    note_date: str | None = None
    when: datetime
    text_held: bool
    suggestions: list[SuggestionView]


class NoteView(BaseModel):
    id: int
    note_key: str
    case_id: str | None = None
    team: str | None = None
    note_date: str | None = None
    author_role: str | None = None
    source: str
    created_at: datetime
    text: str | None = Field(None, description="None once purged.")
    text_purged_at: datetime | None = None
    versions: dict[str, Any] | None = None
    suggestions: list[SuggestionView]
    suppressed: list[dict[str, Any]] = Field(default_factory=list)
    case_history: list[CaseEntry] = Field(default_factory=list, description="The same case's other notes.")
