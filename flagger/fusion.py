"""Fusion: lexicon evidence, context and classifier scores -> concerns.

Pure functions over evidence lists, so each step can be tested on its own.

Scoring, per category:

* lexicon score = noisy-OR of the weights of the *active* (not suppressed),
  non-overlapping indicator hits: ``1 - prod(1 - w)``. Two supporting signs (0.35
  each) make 0.58; one explicit disclosure (0.9) is 0.9 alone.
* with a classifier, the concern score is ``p + (1 - p) * lex * p`` where ``p`` is
  the model's note probability: the lexicon raises the score in proportion to how
  much the model already agrees. On the dev split this beat the noisy-OR of the two
  (mean best F1 0.837 against 0.774; `notebooks/evaluation.ipynb`), because lexicon
  hits on hard-negative notes no longer raise concerns the model has ruled out.
* a concern is raised when the score reaches the category threshold; its level is
  ``high`` from 0.85, ``medium`` from 0.65, else ``low``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

from .categories import CATEGORY_KEYS, CATEGORIES
from .schema import Concern, Evidence, Explanation

DEFAULT_THRESHOLD = 0.5
LEVEL_HIGH = 0.85
LEVEL_MEDIUM = 0.65


@dataclass(frozen=True)
class FusionConfig:
    thresholds: dict[str, float] = field(default_factory=lambda: {k: DEFAULT_THRESHOLD for k in CATEGORY_KEYS})
    level_high: float = LEVEL_HIGH
    level_medium: float = LEVEL_MEDIUM

    def threshold(self, category: str) -> float:
        return self.thresholds.get(category, DEFAULT_THRESHOLD)


def noisy_or(weights: Iterable[float]) -> float:
    """Combine independent pieces of evidence: ``1 - prod(1 - w)``, in [0, 1]."""
    p = 1.0
    for w in weights:
        p *= 1.0 - max(0.0, min(1.0, w))
    return 1.0 - p


def select_non_overlapping(evidence: Sequence[Evidence]) -> list[Evidence]:
    """Keep the strongest of overlapping hits (then the longest), in text order.

    Two indicators matching the same words must not count twice.
    """
    ranked = sorted(evidence, key=lambda e: (-e.weight, -(e.end - e.start), e.start))
    kept: list[Evidence] = []
    for e in ranked:
        if all(e.end <= k.start or k.end <= e.start for k in kept):
            kept.append(e)
    return sorted(kept, key=lambda e: e.start)


def combine(lex_score: float, model_score: float) -> float:
    """Fused score of a category: the model's probability, raised by lexicon evidence
    in proportion to the model's own agreement."""
    p = max(0.0, min(1.0, model_score))
    return p + (1.0 - p) * max(0.0, min(1.0, lex_score)) * p


def distinct_indicator_weights(evidence: Sequence[Evidence]) -> list[float]:
    """One weight per indicator: repeating the same sign is not new evidence."""
    best: dict[str, float] = {}
    for e in evidence:
        best[e.indicator] = max(best.get(e.indicator, 0.0), e.weight)
    return list(best.values())


def level_for(score: float, config: FusionConfig) -> str:
    if score >= config.level_high:
        return "high"
    if score >= config.level_medium:
        return "medium"
    return "low"


def _why(category: str, active: Sequence[Evidence], model_score: float | None, suppressed_n: int) -> str:
    name = CATEGORIES[category].name
    parts = []
    lex = [e for e in active if e.source == "lexicon"]
    if lex:
        descr = ", ".join(f"'{e.text}'" for e in lex[:3])
        more = f" and {len(lex) - 3} more" if len(lex) > 3 else ""
        parts.append(f"{len(lex)} indicator hit(s) for {name}: {descr}{more}")
    if model_score is not None and any(e.source == "model" for e in active):
        parts.append(f"classifier score {model_score:.2f} on the highlighted sentence(s)")
    if suppressed_n:
        parts.append(f"{suppressed_n} other hit(s) set aside by context")
    return "; ".join(parts) + ". A suggestion for DSL review."


def fuse_category(
    category: str,
    hits: Sequence[Evidence],
    config: FusionConfig,
    *,
    model_score: float | None = None,
    model_name: str | None = None,
    model_evidence: Sequence[Evidence] = (),
    lexicon_version: str | None = None,
) -> tuple[Concern | None, list[Evidence]]:
    """Decide one category for one note.

    Args:
        category: the category key.
        hits: this category's lexicon evidence, each marked suppressed or not.
        config: thresholds and level cut-offs.
        model_score: the classifier's note probability for the category, if any.
        model_name: name/version of the classifier.
        model_evidence: the sentences that drove the model score, as evidence.
        lexicon_version: the category lexicon's version, for the explanation.

    Returns:
        ``(concern or None, evidence not used by a concern)``. Evidence that raised no
        concern (suppressed, or too weak alone) is returned so it stays visible.
    """
    active = select_non_overlapping([h for h in hits if not h.suppressed])
    suppressed = [h for h in hits if h.suppressed]
    lex_score = noisy_or(distinct_indicator_weights(active))
    before_ctx = noisy_or(distinct_indicator_weights(select_non_overlapping(list(hits))))
    score = lex_score if model_score is None else combine(lex_score, model_score)
    threshold = config.threshold(category)
    if score < threshold:
        return None, list(hits)
    evidence = list(active)
    if model_score is not None and model_evidence:
        # Show the model's sentences unless lexicon evidence already covers them.
        for me in model_evidence:
            if not any(e.start < me.end and me.start < e.end for e in active):
                evidence.append(me)
    if not evidence:
        # A concern with no evidence a person can see is not shown.
        return None, list(hits)
    evidence.sort(key=lambda e: e.start)
    concern = Concern(
        category=category,
        score=round(score, 4),
        level=level_for(score, config),
        evidence=evidence,
        why=_why(category, evidence, model_score, len(suppressed)),
        explanation=Explanation(
            lexicon_version=lexicon_version,
            indicators=sorted({e.indicator for e in active}),
            lexicon_score=round(lex_score, 4),
            score_before_context=round(before_ctx, 4),
            suppressed_by=sorted({f.rule for h in suppressed for f in h.context}),
            model=model_name,
            model_score=None if model_score is None else round(model_score, 4),
            threshold=threshold,
        ),
    )
    used = {id(e) for e in active}  # identity: comparing pydantic models field by field cost more
    unused = suppressed + [h for h in hits if not h.suppressed and id(h) not in used]
    return concern, unused
