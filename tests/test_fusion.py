"""Fusion as tables over the pure functions: noisy-OR, overlap selection, levels and
the per-category decision, with hand-built evidence."""

from __future__ import annotations

import pytest

from flagger.fusion import (
    FusionConfig,
    combine,
    distinct_indicator_weights,
    fuse_category,
    level_for,
    noisy_or,
    select_non_overlapping,
)
from flagger.schema import ContextFlag, Evidence


def _ev(start: int, end: int, weight: float, indicator: str = "county_lines.a", *, suppressed: bool = False,
        rule: str | None = None, source: str = "lexicon") -> Evidence:
    context = [ContextFlag(attribute="negated", rule=rule, trigger="no", start=0, end=2)] if rule else []
    return Evidence(start=start, end=end, text="x" * (end - start), category="county_lines",
                    indicator=indicator, source=source, weight=weight, context=context, suppressed=suppressed)


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ([], 0.0),
        ([0.5], 0.5),
        ([0.9], 0.9),
        ([0.35, 0.35], 0.5775),
        ([0.5, 0.5, 0.5], 0.875),
        ([1.0, 0.2], 1.0),
        ([0.0, 0.0], 0.0),
        ([1.5], 1.0),  # clamped
        ([-0.3, 0.5], 0.5),  # clamped
    ],
)
def test_fusion_noisy_or(weights, expected):
    assert noisy_or(weights) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("lex_score", "model_score", "expected"),
    [
        (0.0, 0.7, 0.7),  # the model alone
        (1.0, 0.0, 0.0),  # lexicon hits cannot raise what the model rules out
        (0.35, 0.6, 0.684),  # p + (1 - p) * lex * p
        (0.55, 0.5, 0.6375),
        (1.0, 1.0, 1.0),
        (1.5, -0.2, 0.0),  # clamped
    ],
)
def test_fusion_combine(lex_score, model_score, expected):
    assert combine(lex_score, model_score) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("spans", "expected"),
    [
        pytest.param([(0, 5, 0.5), (3, 8, 0.7)], [(3, 8)], id="stronger-wins"),
        pytest.param([(0, 5, 0.5), (2, 10, 0.5)], [(2, 10)], id="equal-weight-longer-wins"),
        pytest.param([(0, 5, 0.5), (5, 9, 0.3)], [(0, 5), (5, 9)], id="adjacent-both-kept"),
        pytest.param([(20, 25, 0.3), (0, 5, 0.9)], [(0, 5), (20, 25)], id="text-order"),
        pytest.param([(0, 10, 0.9), (1, 3, 0.5), (4, 6, 0.5)], [(0, 10)], id="one-covers-two"),
        pytest.param([(0, 10, 0.4), (1, 3, 0.5), (4, 6, 0.5)], [(1, 3), (4, 6)], id="two-stronger-inside"),
        pytest.param([], [], id="empty"),
    ],
)
def test_fusion_select_non_overlapping(spans, expected):
    kept = select_non_overlapping([_ev(s, e, w, indicator=f"county_lines.i{i}") for i, (s, e, w) in enumerate(spans)])
    assert [(e.start, e.end) for e in kept] == expected


@pytest.mark.parametrize(
    ("hits", "expected"),
    [
        ([("county_lines.a", 0.35), ("county_lines.a", 0.5)], [0.5]),
        ([("county_lines.a", 0.35), ("county_lines.b", 0.35)], [0.35, 0.35]),
        ([], []),
    ],
)
def test_fusion_distinct_indicator_weights(hits, expected):
    evidence = [_ev(i * 10, i * 10 + 5, w, ind) for i, (ind, w) in enumerate(hits)]
    assert sorted(distinct_indicator_weights(evidence)) == sorted(expected)


@pytest.mark.parametrize(
    ("score", "config", "expected"),
    [
        (1.0, FusionConfig(), "high"),
        (0.85, FusionConfig(), "high"),
        (0.8499, FusionConfig(), "medium"),
        (0.65, FusionConfig(), "medium"),
        (0.6499, FusionConfig(), "low"),
        (0.5, FusionConfig(), "low"),
        (0.7, FusionConfig(level_high=0.7, level_medium=0.6), "high"),
        (0.6, FusionConfig(level_high=0.7, level_medium=0.6), "medium"),
    ],
)
def test_fusion_level_for(score, config, expected):
    assert level_for(score, config) == expected


# (hits, model score, model evidence, threshold) -> (raised, score, level, evidence spans, unused spans)
FUSE_CASES = [
    pytest.param([_ev(0, 5, 0.55)], None, [], 0.5, (True, 0.55, "low", [(0, 5)], []), id="one-strong-sign"),
    pytest.param([_ev(0, 5, 0.35)], None, [], 0.5, (False, None, None, [], [(0, 5)]), id="one-weak-sign"),
    pytest.param([_ev(0, 5, 0.35, "county_lines.a"), _ev(10, 15, 0.35, "county_lines.b")], None, [], 0.5,
                 (True, 0.5775, "low", [(0, 5), (10, 15)], []), id="two-weak-signs"),
    pytest.param([_ev(0, 5, 0.35, "county_lines.a"), _ev(10, 15, 0.35, "county_lines.a")], None, [], 0.5,
                 (False, None, None, [], [(0, 5), (10, 15)]), id="same-sign-twice-counts-once"),
    pytest.param([_ev(0, 5, 0.9)], None, [], 0.5, (True, 0.9, "high", [(0, 5)], []), id="explicit-disclosure"),
    pytest.param([_ev(0, 5, 0.55), _ev(2, 8, 0.35, "county_lines.b")], None, [], 0.5,
                 (True, 0.55, "low", [(0, 5)], [(2, 8)]), id="overlap-not-counted-twice"),
    pytest.param([_ev(0, 5, 0.9, suppressed=True, rule="neg.no"), _ev(10, 15, 0.55, "county_lines.b")], None, [],
                 0.5, (True, 0.55, "low", [(10, 15)], [(0, 5)]), id="suppressed-set-aside"),
    pytest.param([_ev(0, 5, 0.9, suppressed=True, rule="neg.no")], None, [], 0.5,
                 (False, None, None, [], [(0, 5)]), id="all-suppressed"),
    pytest.param([_ev(0, 5, 0.55)], None, [], 0.6, (False, None, None, [], [(0, 5)]), id="under-custom-threshold"),
    pytest.param([_ev(0, 5, 0.35)], 0.6, [], 0.5, (True, 0.684, "medium", [(0, 5)], []), id="lexicon-and-model-agree"),
    pytest.param([_ev(0, 5, 0.35)], 0.4, [], 0.5, (False, None, None, [], [(0, 5)]), id="weak-sign-weak-model"),
    pytest.param([_ev(0, 5, 0.9)], 0.1, [], 0.5, (False, None, None, [], [(0, 5)]), id="model-rules-out-lexicon"),
    pytest.param([], 0.7, [_ev(20, 40, 0.7, "tfidf", source="model")], 0.5,
                 (True, 0.7, "medium", [(20, 40)], []), id="model-alone-with-evidence"),
    pytest.param([], 0.7, [], 0.5, (False, None, None, [], []), id="model-alone-no-visible-evidence"),
    pytest.param([_ev(22, 30, 0.55)], 0.5, [_ev(20, 40, 0.5, "tfidf", source="model")], 0.5,
                 (True, 0.6375, "low", [(22, 30)], []), id="model-sentence-covered-by-lexicon"),
]


@pytest.mark.parametrize(("hits", "model_score", "model_evidence", "threshold", "expected"), FUSE_CASES)
def test_fusion_fuse_category(hits, model_score, model_evidence, threshold, expected):
    raised, score, level, spans, unused_spans = expected
    config = FusionConfig(thresholds={"county_lines": threshold})
    concern, unused = fuse_category("county_lines", hits, config, model_score=model_score,
                                    model_name="tfidf" if model_score is not None else None,
                                    model_evidence=model_evidence, lexicon_version="1.0.0")
    assert (concern is not None) == raised
    assert sorted((e.start, e.end) for e in unused) == unused_spans
    if not raised:
        return
    assert concern.category == "county_lines"
    assert concern.status == "suggested"
    assert concern.score == pytest.approx(score, abs=1e-4)
    assert concern.level == level
    assert [(e.start, e.end) for e in concern.evidence] == spans
    assert not any(e.suppressed for e in concern.evidence)
    assert concern.explanation.threshold == threshold
    assert concern.explanation.lexicon_version == "1.0.0"
    assert concern.why.endswith("A suggestion for DSL review.")


@pytest.mark.parametrize(
    ("hits", "lexicon_score", "before_context", "suppressed_by", "indicators"),
    [
        ([_ev(0, 5, 0.9, "county_lines.a", suppressed=True, rule="neg.no"), _ev(10, 15, 0.55, "county_lines.b")],
         0.55, 0.955, ["neg.no"], ["county_lines.b"]),
        ([_ev(0, 5, 0.55, "county_lines.a"), _ev(10, 15, 0.55, "county_lines.b")],
         0.7975, 0.7975, [], ["county_lines.a", "county_lines.b"]),
    ],
)
def test_fusion_explanation_scores(hits, lexicon_score, before_context, suppressed_by, indicators):
    concern, _ = fuse_category("county_lines", hits, FusionConfig())
    assert concern.explanation.lexicon_score == pytest.approx(lexicon_score, abs=1e-4)
    assert concern.explanation.score_before_context == pytest.approx(before_context, abs=1e-4)
    assert concern.explanation.suppressed_by == suppressed_by
    assert concern.explanation.indicators == indicators
    assert concern.explanation.model is None and concern.explanation.model_score is None


@pytest.mark.parametrize(("category", "expected"), [("county_lines", 0.5), ("not_a_category", 0.5)])
def test_fusion_default_thresholds(category, expected):
    assert FusionConfig().threshold(category) == expected
