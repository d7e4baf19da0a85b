"""Request and response models of the HTTP service.

The result of a scan is :class:`flagger.schema.NoteResult`, the same contract the CLI
writes; the models here only wrap it (a batch, queue receipts) or describe metadata.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from flagger.schema import SCHEMA_VERSION, SUGGESTION_NOTICE, NoteIn, NoteResult, Versions

# -- examples (checked against the models in tests/test_api_docs.py) -------------------

EXAMPLE_NOTE = {
    "id": "note-1842",
    "text": "Jay went missing on Friday night and came back on Sunday with two new phones and £300 he "
            "would not explain.",
    "case_id": "case-77",
    "note_date": "2025-03-14",
    "author_role": "youth worker",
}

EXAMPLE_RESULT: dict[str, Any] = {
    "schema_version": SCHEMA_VERSION,
    "id": "note-1842",
    "status": "scanned",
    "concerns": [
        {
            "category": "missing",
            "score": 0.8,
            "level": "medium",
            "status": "suggested",
            "notice": SUGGESTION_NOTICE,
            "evidence": [
                {"start": 4, "end": 16, "text": "went missing", "category": "missing",
                 "indicator": "missing.went_missing", "source": "lexicon", "weight": 0.8,
                 "context": [], "suppressed": False},
            ],
            "why": "1 indicator hit(s) for Missing from home, care or education: 'went missing'. "
                   "A suggestion for DSL review.",
            "explanation": {
                "lexicon_version": "1.0.0",
                "indicators": ["missing.went_missing"],
                "lexicon_score": 0.8,
                "score_before_context": 0.8,
                "suppressed_by": [],
                "model": None,
                "model_score": None,
                "threshold": 0.5,
            },
        }
    ],
    "suppressed": [
        {"start": 66, "end": 76, "text": "new phones", "category": "county_lines",
         "indicator": "county_lines.unexplained_phones", "source": "lexicon", "weight": 0.4,
         "context": [], "suppressed": False},
    ],
    "error": None,
    "versions": {"flagger": "0.1.0", "lexicons": "lex-3f2a9c0d1b7e", "context_rules": "1.0.0", "model": None},
    "meta": {"case_id": "case-77", "note_date": "2025-03-14", "author_role": "youth worker"},
}

EXAMPLE_ERROR_RESULT: dict[str, Any] = {
    "schema_version": SCHEMA_VERSION,
    "id": "note-1843",
    "status": "error",
    "concerns": [],
    "suppressed": [],
    "error": {"code": "E201", "reason": "'text' is empty", "line": None},
    "versions": EXAMPLE_RESULT["versions"],
    "meta": {},
}


# -- scan -----------------------------------------------------------------------------

class ScanOne(NoteIn):
    """One note, posted on its own."""

    queue: bool = Field(False, description="Also put the suggestions in the DSL review queue "
                                           "(idempotent per note id and text).")


class ScanBatch(BaseModel):
    """Several notes at once; results come back one per note, in the same order."""

    model_config = ConfigDict(extra="forbid")

    notes: list[NoteIn] = Field(min_length=1, description="The notes (at most the service's api_max_batch).")
    queue: bool = Field(False, description="Also put the suggestions in the DSL review queue "
                                           "(idempotent per note id and text).")


SCAN_TAGS = ("batch", "one")


def _scan_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "batch" if "notes" in value else "one"
    return "batch" if isinstance(value, ScanBatch) else "one"


# The discriminator is a function of the body's keys, so a bad body gets the errors of
# the shape it meant, not of both shapes.
ScanRequest = Annotated[
    Union[Annotated[ScanBatch, Tag("batch")], Annotated[ScanOne, Tag("one")]],
    Discriminator(_scan_kind),
]


class QueueReceipt(BaseModel):
    index: int = Field(ge=0, description="Position of the note in the request.")
    id: str = Field(description="The note id as sent.")
    suggestion_ids: list[int] = Field(description="Review queue items for this note (existing ones on a repeat).")


class ScanResponse(BaseModel):
    """One :class:`NoteResult` per note, in request order; each concern is a suggestion
    for a DSL to review, with its evidence offsets and an ``explanation`` (indicator ids,
    lexicon version, context rules that suppressed hits, model score and threshold)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "results": [EXAMPLE_RESULT, EXAMPLE_ERROR_RESULT], "queued": None}]})

    results: list[NoteResult]
    queued: list[QueueReceipt] | None = Field(
        None, description="Present when queue was true: the review items per note that has concerns.")


# -- metadata -------------------------------------------------------------------------

class CategoryOut(BaseModel):
    key: str
    name: str
    definition: str
    sources: list[str] = Field(description="Policy texts that define it (seed policies by section).")


class CategoriesOut(BaseModel):
    categories: list[CategoryOut]


class LexiconFileOut(BaseModel):
    category: str
    file: str
    version: str
    indicators: int = Field(ge=0, description="Number of indicators in the file.")
    sources: dict[str, str]


class LexiconsOut(BaseModel):
    version: str = Field(description="Combined lexicon version, as in each result's versions.lexicons.")
    context_rules: str
    files: list[LexiconFileOut]


class ModelOut(BaseModel):
    name: str
    version: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict, description="Evaluation figures from its model card.")
    details: dict[str, Any] = Field(default_factory=dict, description="Other manifest fields (files, checksums).")


class ModelsOut(BaseModel):
    active: str = Field(description="The model fused with the lexicons in this service, or 'none'.")
    bundled: list[ModelOut]
    note: str


class HealthOut(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyOut(BaseModel):
    status: Literal["ready", "not ready"]
    pipeline: bool
    store: bool
    versions: Versions | None = None


# -- keys -----------------------------------------------------------------------------

class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="Who or what uses the key.")
    role: Literal["scanner", "reviewer", "admin"]


class KeyOut(BaseModel):
    key_id: str
    name: str
    role: str
    created_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None


class KeyCreated(KeyOut):
    token: str = Field(description="The bearer token. Shown once; only its hash is stored.")


class KeysOut(BaseModel):
    keys: list[KeyOut]


# -- errors ---------------------------------------------------------------------------

class ErrorOut(BaseModel):
    detail: str = Field(description="What went wrong. Never contains note text.")


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorOut(BaseModel):
    detail: list[FieldError] = Field(description="One entry per bad field; the offending value is never echoed.")
