"""Pure review logic: decision rules, highlight segments, durations, scrubbing, charts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from flagger import review as rv
from flagger.errors import ConflictError, PermissionDenied, StoreError


@pytest.mark.parametrize(
    "state, action, level, rule, user, first, agree, expected",
    [
        ("pending", "confirm", "high", False, 1, None, None, "confirmed"),
        ("pending", "reject", "low", True, 1, None, None, "rejected"),
        ("pending", "reject", "high", False, 1, None, None, "rejected"),
        ("pending", "reject", "high", True, 1, None, None, "awaiting_second_review"),
        ("pending", "recategorise", "medium", False, 1, None, None, "recategorised"),
        ("awaiting_second_review", "second_review", "high", True, 2, 1, True, "rejected"),
        ("awaiting_second_review", "second_review", "high", True, 2, 1, False, "pending"),
    ],
)
def test_review_next_state_table(state, action, level, rule, user, first, agree, expected):
    assert rv.next_state(state=state, action=action, level=level, second_review_high_reject=rule,
                         user_id=user, first_reviewer_id=first, agree=agree) == expected


@pytest.mark.parametrize(
    "state, action, user, first, error, match",
    [
        ("confirmed", "reject", 2, None, ConflictError, "already decided by Ann"),
        ("rejected", "confirm", 2, None, ConflictError, "already decided by Ann"),
        ("awaiting_second_review", "confirm", 2, 1, ConflictError, "second reviewer"),
        ("awaiting_second_review", "second_review", 1, 1, PermissionDenied, "different reviewer"),
        ("pending", "second_review", 2, None, StoreError, "not awaiting"),
    ],
)
def test_review_next_state_refusals(state, action, user, first, error, match):
    with pytest.raises(error, match=match):
        rv.next_state(state=state, action=action, level="high", second_review_high_reject=True,
                      user_id=user, first_reviewer_id=first, agree=True, decided_by="Ann")


@pytest.mark.parametrize(
    "fields, match",
    [
        ({"action": "reject"}, "reject needs a reason"),
        ({"action": "reject", "reason": "because"}, "reject needs a reason"),
        ({"action": "reject", "reason": "other"}, "needs a comment"),
        ({"action": "recategorise"}, "new category or a new level"),
        ({"action": "recategorise", "new_category": "bullying"}, "unknown category"),
        ({"action": "recategorise", "new_level": "urgent"}, "unknown level"),
        ({"action": "second_review"}, "agree"),
    ],
)
def test_review_check_decision_refuses(fields, match):
    with pytest.raises(StoreError, match=match):
        rv.check_decision(rv.DecisionIn(**fields))


@pytest.mark.parametrize("fields", [
    {"action": "confirm"},
    {"action": "reject", "reason": "negated"},
    {"action": "reject", "reason": "other", "comment": "duplicate of an earlier note"},
    {"action": "recategorise", "new_category": "trafficking"},
    {"action": "recategorise", "new_level": "low"},
    {"action": "second_review", "agree": False},
])
def test_review_check_decision_accepts(fields):
    rv.check_decision(rv.DecisionIn(**fields))


@pytest.mark.parametrize("length, start, end, ok", [
    (10, 0, 10, True), (10, 3, 4, True), (10, 4, 4, False), (10, 5, 3, False), (10, 0, 11, False),
    (10, -1, 3, False), (0, 0, 1, False),
])
def test_review_check_span(length, start, end, ok):
    if ok:
        rv.check_span(length, start, end)
    else:
        with pytest.raises(StoreError, match=f"selection {start}-{end} is not inside the note"):
            rv.check_span(length, start, end)


TEXT = "He went missing with two phones."


@pytest.mark.parametrize(
    "spans, expected",
    [
        ([], [(0, 32, 0)]),
        ([rv.Span(3, 15, "missing")], [(0, 3, 0), (3, 15, 1), (15, 32, 0)]),
        # Overlap: both spans cover the middle segment.
        ([rv.Span(3, 15, "missing"), rv.Span(8, 31, "county_lines")],
         [(0, 3, 0), (3, 8, 1), (8, 15, 2), (15, 31, 1), (31, 32, 0)]),
        # Out-of-range and empty spans are dropped, not fatal.
        ([rv.Span(30, 99, "x"), rv.Span(5, 5, "y")], [(0, 32, 0)]),
    ],
)
def test_review_segments_cover_text(spans, expected):
    segs = rv.segments(TEXT, spans)
    assert [(s.start, s.end, len(s.spans)) for s in segs] == expected
    assert "".join(s.text for s in segs) == TEXT
    for sp in spans:
        if 0 <= sp.start < sp.end <= len(TEXT):
            assert sum(sp in s.closing for s in segs) == 1  # exactly one label per span


@pytest.mark.parametrize("s, expected", [
    ("90d", timedelta(days=90)), ("12h", timedelta(hours=12)), ("2w", timedelta(weeks=2)), (" 1d ", timedelta(days=1)),
])
def test_review_parse_duration(s, expected):
    assert rv.parse_duration(s) == expected


@pytest.mark.parametrize("s", ["", "90", "d90", "1y", "-3d", "1.5d"])
def test_review_parse_duration_refuses(s):
    with pytest.raises(ValueError, match="is not a duration"):
        rv.parse_duration(s)


NOW = datetime(2025, 3, 10, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("since, expected", [
    (NOW - timedelta(minutes=5), "5m"), (NOW - timedelta(hours=3, minutes=2), "3h 2m"),
    (NOW - timedelta(days=2, hours=4), "2d 4h"), (NOW + timedelta(hours=1), "0m"),
    (datetime(2025, 3, 10, 11, 0), "1h 0m"),  # naive values are UTC
])
def test_review_waited(since, expected):
    assert rv.waited(since, NOW) == expected


def test_review_scrub_result_removes_every_fragment_of_text():
    result = {
        "id": "n1", "status": "scanned",
        "concerns": [{"category": "missing", "why": "hit: 'went missing'", "evidence": [
            {"start": 3, "end": 15, "text": "went missing", "indicator": "missing.went_missing",
             "context": [{"attribute": "negated", "rule": "neg.no", "trigger": "no", "start": 0, "end": 2}]}]}],
        "suppressed": [{"start": 20, "end": 30, "text": "two phones", "indicator": "cl.phones", "context": []}],
    }
    out = rv.scrub_result(result)
    flat = repr(out)
    for fragment in ("went missing", "two phones", "'no'"):
        assert fragment not in flat
    assert out["concerns"][0]["evidence"][0]["start"] == 3
    assert out["concerns"][0]["evidence"][0]["indicator"] == "missing.went_missing"
    assert result["concerns"][0]["evidence"][0]["text"] == "went missing"  # the input is untouched


def test_review_indicator_counts_and_table():
    rows = [(["a", "b"], "rejected", "negated"), (["a"], "rejected", "negated"), (["a"], "confirmed", None),
            (["b"], "rejected", "historical"), (["c"], "recategorised", None)]
    counts = rv.indicator_reason_counts(rows)
    assert counts["a"] == {"confirmed": 1, "rejected": 2, "negated": 2}
    assert counts["b"] == {"confirmed": 0, "rejected": 2, "negated": 1, "historical": 1}
    assert counts["c"] == {"confirmed": 1, "rejected": 0}
    table = rv.format_indicator_table(counts).splitlines()
    assert table[0].split()[:4] == ["indicator", "confirmed", "rejected", "reject_rate"]
    assert [line.split()[0] for line in table[1:]] == ["a", "b", "c"]  # noisiest first
    assert table[1].split()[3] == "0.67"


def test_review_timeline_svg_marks_each_state():
    pts = [{"when": NOW - timedelta(days=30), "category": "missing", "level": "medium", "state": "confirmed"},
           {"when": NOW - timedelta(days=10), "category": "missing", "level": "high", "state": "rejected"},
           {"when": NOW, "category": "county_lines", "level": "high", "state": "pending"}]
    svg = rv.timeline_svg(pts)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count('class="mark confirmed') == 1 and svg.count('class="mark open') == 1
    assert svg.count('class="mark rejected"') == 1
    assert "confirmed: 1" in svg and "<title" in svg and "http://" not in svg.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    assert "No suggestions" in rv.timeline_svg([])


def test_review_chronology_entry_is_a_marked_draft():
    text = rv.chronology_entry(when=NOW, note_key="n-9", category_name="Missing", level="high",
                               evidence=["went missing"], decided_by="Ann Lee", decided_at=NOW, comment="3rd time")
    assert text.splitlines()[0] == "10/03/2025 - Missing (high) noted in case note n-9."
    assert '"went missing"' in text and "Ann Lee" in text and "DRAFT" in text and "has not referred" in text
