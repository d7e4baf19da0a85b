"""The Flagger: text in, suggested concerns out.

    >>> from flagger import Flagger
    >>> result = Flagger().scan("She came back with two phones and £300 she can't explain.")
    >>> [c.category for c in result.concerns]

The pipeline is built once per Flagger (so once per worker process) and reused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping

from spacy.language import Language
from spacy.matcher import Matcher, PhraseMatcher
from spacy.tokens import Doc, Span, SpanGroup

from . import __version__
from .categories import CATEGORY_KEYS
from .context import ContextComponent, load_context_rules
from .errors import InputFileError, InputRecordError
from .fusion import FusionConfig, fuse_category
from .lexicon import LexiconSet, load_lexicons
from .pipeline import build_base_nlp, is_printable_text, normalise
from .schema import ErrorInfo, Evidence, NoteResult, Versions

log = logging.getLogger(__name__)

HITS_KEY = "flagger_hits"


class LexiconMatcher:
    """spaCy component: lexicon phrases and token patterns -> ``doc.spans['flagger_hits']``.

    Each span's label is the indicator id.
    """

    def __init__(self, nlp: Language, lexicons: LexiconSet, key: str = HITS_KEY):
        self.key = key
        self.phrase = PhraseMatcher(nlp.vocab, attr="LOWER")
        self.matcher = Matcher(nlp.vocab)
        for ind in lexicons.indicators():
            if ind.phrases:
                self.phrase.add(ind.id, [nlp.make_doc(normalise(p)) for p in ind.phrases])
            if ind.patterns:
                self.matcher.add(ind.id, [list(p) for p in ind.patterns])

    def __call__(self, doc: Doc) -> Doc:
        matches = set(self.phrase(doc)) | set(self.matcher(doc))
        spans = [Span(doc, s, e, label=key) for key, s, e in sorted(matches, key=lambda m: (m[1], m[2]))]
        doc.spans[self.key] = SpanGroup(doc, name=self.key, spans=spans)
        return doc


@dataclass
class _Record:
    id: str
    text: str | None
    meta: dict[str, Any]
    error: ErrorInfo | None = None


class Flagger:
    """Scans case notes and suggests concerns for a DSL to review.

    Args:
        lexicon_dir: folder of lexicon YAML files (default: bundled).
        context_rules: context rules YAML file (default: bundled).
        model: "tfidf", "minilm" or "none" (default: from settings, "tfidf"). When the
            model artefacts are not present the Flagger falls back to lexicons only and
            logs a warning; ``versions.model`` is then None.
        max_note_chars: notes longer than this are refused with an error result.

    Raises:
        LexiconError: when a lexicon or context file is invalid.
        ModelError: when a model artefact fails its checksum.
    """

    def __init__(self, *, lexicon_dir: str | None = None, context_rules: str | None = None,
                 model: str | None = None, models_dir: str | None = None,
                 max_note_chars: int | None = None, fusion: FusionConfig | None = None):
        from .settings import get_settings

        s = get_settings()
        self.lexicons = load_lexicons(lexicon_dir or s.lexicon_dir)
        rules = load_context_rules(context_rules or s.context_rules)
        self.max_note_chars = max_note_chars or s.max_note_chars
        self.nlp = build_base_nlp()
        self._matcher = LexiconMatcher(self.nlp, self.lexicons)
        self._context = ContextComponent(self.nlp, rules=rules, span_keys=[HITS_KEY])
        self.classifier = None
        model_name = model or s.model
        if model_name != "none":
            from .classify import load_classifier

            self.classifier = load_classifier(model_name, models_dir=models_dir or s.models_dir)
        self.fusion = fusion or (self.classifier.fusion_config() if self.classifier else FusionConfig())
        self.versions = Versions(
            flagger=__version__,
            lexicons=self.lexicons.version,
            context_rules=rules.version,
            model=self.classifier.version if self.classifier else None,
        )

    # -- one note ---------------------------------------------------------
    def scan(self, text: Any, *, id: str = "note", meta: Mapping[str, Any] | None = None) -> NoteResult:
        """Scan one note. Bad input gives a result with ``status='error'``, never a raise."""
        return next(self.scan_many([{"id": id, "text": text, **(meta or {})}]))

    # -- many notes -------------------------------------------------------
    def _check(self, rec: Mapping[str, Any], line: int | None) -> _Record:
        rid = rec.get("id")
        rid = "" if rid is None else str(rid)
        meta = {k: v for k, v in rec.items() if k not in ("id", "text")}
        text = rec.get("text")
        err = None
        if "_error" in rec:
            return _Record(id=rid or f"<line {line}>", text=None, meta={},
                           error=ErrorInfo(code=InputFileError.code, reason=str(rec["_error"]), line=line))
        if not rid:
            err = ErrorInfo(code=InputRecordError.code, reason="record has no 'id'", line=line)
        elif text is None:
            err = ErrorInfo(code=InputRecordError.code, reason="record has no 'text'", line=line)
        elif not isinstance(text, str):
            err = ErrorInfo(code=InputRecordError.code,
                            reason=f"'text' must be a string, got {type(text).__name__}", line=line)
        elif not text.strip():
            err = ErrorInfo(code=InputRecordError.code, reason="'text' is empty", line=line)
        elif len(text) > self.max_note_chars:
            err = ErrorInfo(code=InputRecordError.code,
                            reason=f"'text' has {len(text)} characters, over the limit of {self.max_note_chars}",
                            line=line)
        elif "\ufffd" in text or not is_printable_text(text):
            err = ErrorInfo(code=InputRecordError.code,
                            reason="'text' is not valid UTF-8 text (undecodable or binary bytes)", line=line)
        return _Record(id=rid or f"<line {line}>", text=None if err else text, meta=meta, error=err)

    def scan_many(self, records: Iterable[Mapping[str, Any]], *, batch_size: int = 64) -> Iterator[NoteResult]:
        """Scan records (mappings with ``id``, ``text`` and any other fields, carried
        through in ``meta``). Yields one result per record, in input order."""
        return self.scan_numbered(((None, r) for r in records), batch_size=batch_size)

    def scan_numbered(self, pairs: Iterable[tuple[int | None, Mapping[str, Any]]], *,
                      batch_size: int = 64) -> Iterator[NoteResult]:
        """Like :meth:`scan_many` over ``(line number, record)`` pairs, so error results
        can say which line of the input they came from. A record holding ``_error``
        (a reader could not parse it) becomes an error result with that reason."""
        batch: list[_Record] = []
        for line, rec in pairs:
            batch.append(self._check(rec, line))
            if len(batch) >= batch_size:
                yield from self._scan_batch(batch)
                batch = []
        if batch:
            yield from self._scan_batch(batch)

    def _scan_batch(self, batch: list[_Record]) -> Iterator[NoteResult]:
        good = [r for r in batch if r.error is None]
        docs = [self._context(self._matcher(d)) for d in self.nlp.pipe(normalise(r.text) for r in good)]
        preds = self.classifier.predict_docs(docs) if self.classifier and docs else [None] * len(docs)
        scanned = iter(zip(docs, preds))
        for r in batch:
            if r.error is not None:
                yield NoteResult(id=r.id, status="error", error=r.error, versions=self.versions, meta=r.meta)
            else:
                doc, pred = next(scanned)
                yield self._result(r, doc, pred)

    def _result(self, rec: _Record, doc: Doc, pred) -> NoteResult:
        text = rec.text
        by_cat: dict[str, list[Evidence]] = {k: [] for k in CATEGORY_KEYS}
        for span in doc.spans[HITS_KEY]:
            ind = self.lexicons.indicator(span.label_)
            ctx = span._.context
            flags = list(ctx.flags) if ctx is not None else []
            by_cat[ind.category].append(
                Evidence(start=span.start_char, end=span.end_char, text=text[span.start_char:span.end_char],
                         category=ind.category, indicator=ind.id, source="lexicon", weight=ind.weight,
                         context=flags, suppressed=bool(flags))
            )
        concerns, leftover = [], []
        for cat in CATEGORY_KEYS:
            model_score = model_ev = None
            if pred is not None:
                model_score = pred.scores.get(cat)
                model_ev = pred.evidence.get(cat, [])
            if not by_cat[cat] and not model_score:
                continue
            lex = self.lexicons.lexicons.get(cat)
            concern, unused = fuse_category(
                cat, by_cat[cat], self.fusion, model_score=model_score,
                model_name=self.classifier.version if self.classifier else None,
                model_evidence=model_ev or (), lexicon_version=lex.version if lex else None,
            )
            if concern is not None:
                concerns.append(concern)
            leftover.extend(unused)
        concerns.sort(key=lambda c: -c.score)
        leftover.sort(key=lambda e: e.start)
        return NoteResult(id=rec.id, status="scanned", concerns=concerns, suppressed=leftover,
                          versions=self.versions, meta=rec.meta)
