"""The result contract: what flagger says about one note.

One set of pydantic models serves the CLI (``model_dump_json()`` per line), the HTTP
service (``response_model``) and the review store (saved and reloaded as JSON). Input
models (``NoteIn``) are kept apart from results (``NoteResult``).

Every concern is a *suggestion awaiting review by a Designated Safeguarding Lead*.
Nothing in this contract refers, confirms or decides; a person does that.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .categories import CATEGORY_KEYS

SCHEMA_VERSION = "1.0"

CategoryKey = Literal[
    "neglect",
    "cse",
    "county_lines",
    "radicalisation",
    "fgm",
    "physical_abuse",
    "sexual_abuse",
    "emotional_abuse",
    "domestic_abuse",
    "forced_marriage",
    "trafficking",
    "missing",
]
assert set(CategoryKey.__args__) == set(CATEGORY_KEYS)  # the two lists must not drift

ContextAttribute = Literal["negated", "hypothetical", "historical", "other_person", "professional", "uncertain"]
CONTEXT_ATTRIBUTES: tuple[str, ...] = ContextAttribute.__args__
# Attributes that stop a hit raising a concern on its own. ``uncertain`` ("possible",
# "at risk of", "cannot rule out") is recorded but does not suppress: in safeguarding
# a suspected or possible harm is exactly what a DSL needs to see.
SUPPRESSING_ATTRIBUTES: frozenset[str] = frozenset(
    {"negated", "hypothetical", "historical", "other_person", "professional"}
)
Level = Literal["low", "medium", "high"]
EvidenceSource = Literal["lexicon", "model", "reviewer"]

SUGGESTION_NOTICE = (
    "Suggestion only, awaiting review by a Designated Safeguarding Lead. "
    "flagger does not refer, confirm or contact anyone."
)


class ContextFlag(BaseModel):
    """One context attribute set on a piece of evidence, with the trigger that set it."""

    model_config = ConfigDict(frozen=True)

    attribute: ContextAttribute
    rule: str = Field(description="Id of the context rule that fired, e.g. 'neg.no_signs_of'.")
    trigger: str = Field(description="The trigger words as they appear in the note.")
    start: int = Field(ge=0, description="Character offset of the trigger start.")
    end: int = Field(ge=0, description="Character offset just past the trigger end.")


class Evidence(BaseModel):
    """A highlighted stretch of the original note and what raised it.

    ``start``/``end`` are character offsets into the original text (end exclusive), so
    ``text[start:end] == evidence.text``.
    """

    start: int = Field(ge=0)
    end: int = Field(ge=0)
    text: str
    category: CategoryKey
    indicator: str = Field(description="Lexicon indicator id, or the model name for model evidence.")
    source: EvidenceSource
    weight: float = Field(ge=0, le=1, description="Indicator weight, or the model's sentence score.")
    context: list[ContextFlag] = Field(default_factory=list)
    suppressed: bool = Field(
        default=False,
        description="True when context (negated, hypothetical, historical, other_person, professional) "
        "stops this hit raising a concern; 'uncertain' is shown but does not suppress.",
    )

    @model_validator(mode="after")
    def _offsets_ordered(self) -> "Evidence":
        if self.end < self.start:
            raise ValueError(f"evidence end {self.end} is before start {self.start}")
        return self


class Explanation(BaseModel):
    """Why a concern has its score, in the spirit of Presidio's AnalysisExplanation."""

    lexicon_version: str | None = None
    indicators: list[str] = Field(default_factory=list, description="Indicator ids that contributed.")
    lexicon_score: float = Field(0.0, ge=0, le=1, description="Score from active lexicon evidence.")
    score_before_context: float = Field(
        0.0, ge=0, le=1, description="Lexicon score had no context rule suppressed anything."
    )
    suppressed_by: list[str] = Field(
        default_factory=list, description="Context rules that suppressed hits in this category."
    )
    model: str | None = None
    model_score: float | None = Field(None, ge=0, le=1)
    threshold: float = Field(ge=0, le=1, description="Score needed to raise this category.")


class Concern(BaseModel):
    """A suggested concern in one category, with the evidence a person can see."""

    category: CategoryKey
    score: float = Field(ge=0, le=1)
    level: Level
    status: Literal["suggested"] = "suggested"
    notice: str = SUGGESTION_NOTICE
    evidence: list[Evidence] = Field(min_length=1)
    why: str
    explanation: Explanation


class ErrorInfo(BaseModel):
    code: str
    reason: str = Field(description="What is wrong with the record. Never contains note text.")
    line: int | None = Field(None, description="1-based line or row number in the input, when known.")


class Versions(BaseModel):
    flagger: str
    lexicons: str = Field(description="Combined lexicon version: semver of each file hashed together.")
    context_rules: str
    model: str | None = None


class NoteResult(BaseModel):
    """The result for one note: scanned with its concerns, or an error with a reason."""

    schema_version: str = SCHEMA_VERSION
    id: str
    status: Literal["scanned", "error"]
    concerns: list[Concern] = Field(default_factory=list)
    suppressed: list[Evidence] = Field(
        default_factory=list,
        description="Hits that did not raise a concern (context or too weak alone), kept visible.",
    )
    error: ErrorInfo | None = None
    versions: Versions | None = None
    meta: dict[str, Any] = Field(
        default_factory=dict, description="Input fields carried through (case_id, note_date, ...)."
    )

    @model_validator(mode="after")
    def _error_has_reason(self) -> "NoteResult":
        if self.status == "error" and self.error is None:
            raise ValueError("a result with status 'error' needs an error reason")
        if self.status == "error" and self.concerns:
            raise ValueError("a result in error cannot carry concerns")
        return self

    @property
    def categories(self) -> list[str]:
        return [c.category for c in self.concerns]


class NoteIn(BaseModel):
    """One note as a caller sends it."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=200)
    text: str
    case_id: str | None = Field(None, max_length=200)
    note_date: str | None = Field(None, max_length=40)
    author_role: str | None = Field(None, max_length=100)
