"""The Flagger: text in, suggested concerns out.

    >>> from flagger import Flagger
    >>> result = Flagger().scan("She came back with two phones and £300 she can't explain.")
    >>> [c.category for c in result.concerns]

The pipeline is built once per Flagger (so once per worker process) and reused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from spacy.language import Language
from spacy.matcher import Matcher, PhraseMatcher
from spacy.attrs import LEMMA, LOWER
from spacy.tokens import Doc, Span, SpanGroup

from . import __version__
from .categories import CATEGORY_KEYS
from .context import ContextComponent, load_context_rules
from .errors import InputFileError, InputRecordError
from .fusion import FusionConfig, fuse_category
from .lexicon import LexiconSet, load_lexicons
from .pipeline import build_base_nlp, is_printable_text, normalise, sentence_bounds
from .schema import ErrorInfo, Evidence, NoteResult, Versions

log = logging.getLogger(__name__)

HITS_KEY = "flagger_hits"


_LITERAL_ATTRS = {"LOWER": "lower", "ORTH": "lower", "TEXT": "lower", "NORM": "lower", "LEMMA": "lemma"}


def required_literals(pattern: Sequence[Mapping[str, Any]]) -> list[tuple[str, frozenset[str]]]:
    """The tokens a Matcher pattern cannot match without, as (``lower`` or ``lemma``,
    lower-cased values): tokens with no optional operator whose LOWER/ORTH/TEXT/NORM/LEMMA
    is a literal or an ``IN`` list. A sentence that lacks any one of them cannot match.
    """
    out = []
    for tok in pattern:
        if tok.get("OP") not in (None, "1", "+"):
            continue
        for attr, kind in _LITERAL_ATTRS.items():
            v = tok.get(attr)
            if isinstance(v, str):
                out.append((kind, frozenset({v.lower()})))
                break
            if isinstance(v, dict) and set(v) == {"IN"}:
                out.append((kind, frozenset(str(x).lower() for x in v["IN"])))
                break
    return out


class LexiconMatcher:
    """spaCy component: lexicon phrases and token patterns -> ``doc.spans['flagger_hits']``.

    Each span's label is the indicator id. Phrases go to a PhraseMatcher (a hash trie,
    fast at any size). spaCy's token Matcher evaluates every pattern at every token and
    its ``IN`` predicates call back into Python per token, which made it ~90% of the
    scan time on long notes (about 10k words/s). So each token pattern gets its own
    small Matcher, run only on a sentence that holds all of the pattern's required
    literal tokens (see :func:`required_literals`). The matches are the same as running
    every pattern everywhere, because a pattern cannot match without its required
    tokens and patterns do not cross sentences.

    Which (sentence, pattern) pairs pass is worked out for a whole doc at once on bit
    sets (:meth:`_gated_pairs`). spaCy has no way to restrict a Matcher to chosen
    spans, and checking each candidate pattern against Python sets sentence by
    sentence cost more than the Matcher calls it saved; hence this code.
    """

    def __init__(self, nlp: Language, lexicons: LexiconSet, key: str = HITS_KEY):
        self.key = key
        self.phrase = PhraseMatcher(nlp.vocab, attr="LOWER")
        self.unanchored = Matcher(nlp.vocab)
        self.patterns: list[Matcher] = []
        reqs: list[list[tuple[str, frozenset[str]]]] = []
        strings = nlp.vocab.strings
        for ind in lexicons.indicators():
            if ind.phrases:
                self.phrase.add(ind.id, [nlp.make_doc(normalise(p)) for p in ind.phrases])
            for p in ind.patterns:
                req = required_literals(p)
                if not req:
                    self.unanchored.add(ind.id, [list(p)])
                    continue
                m = Matcher(nlp.vocab)
                m.add(ind.id, [list(p)])
                self.patterns.append(m)
                reqs.append(req)
        # Bit sets: one block of bits per requirement slot j and one bit per pattern
        # in each block, so bit (j, p) means "pattern p's j-th required token is
        # here". A pattern with fewer than ``slots`` requirements has its unused bits
        # always set. A sentence passes pattern p when bit p is set in every block.
        n_pat = len(self.patterns)
        self._slots = max((len(r) for r in reqs), default=1)
        block = -(-max(n_pat, 1) // 64) * 64
        always = np.zeros((self._slots, block), dtype=bool)
        # One table for LOWER and LEMMA requirements, keyed by the word's hash: a
        # token is looked up by both its LOWER and its LEMMA, so a word required as
        # a lemma is also "met" by a token with that lower form. That only lets a
        # few more sentences through the gate to the Matcher, which decides.
        terms: dict[int, list[tuple[int, int]]] = {}  # hash -> (slot, pattern)
        for pid, req in enumerate(reqs):
            always[len(req):, pid] = True
            for j, (_kind, values) in enumerate(req):
                for v in values:
                    terms.setdefault(strings.add(v), []).append((j, pid))
        self._always = _pack(always)
        keys = sorted(terms)
        rows = np.zeros((len(keys), self._slots, block), dtype=bool)
        for i, h in enumerate(keys):
            for j, pid in terms[h]:
                rows[i, j, pid] = True
        self._keys = np.array(keys, dtype=np.uint64)
        self._bits = _pack(rows).reshape(len(keys), self._slots * block // 64)

    def __call__(self, doc: Doc) -> Doc:
        matches = set(self.phrase(doc))
        if len(self.unanchored):
            matches.update(self.unanchored(doc))
        if self.patterns and len(doc):
            matches.update(self._anchored_matches(doc))
        spans = [Span(doc, s, e, label=key) for key, s, e in sorted(matches, key=lambda m: (m[1], m[2]))]
        doc.spans[self.key] = SpanGroup(doc, name=self.key, spans=spans)
        return doc

    def _gated_pairs(self, doc: Doc, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(sentence index, pattern index) of every sentence that holds all of a
        pattern's required tokens, sorted by sentence then pattern.

        A sentence's bit set is the OR of its tokens' rows; AND-ing its blocks leaves
        the bits of the patterns whose requirements are all met.
        """
        none = np.empty(0, dtype=np.int64)
        if not len(self._keys):
            return none, none
        vals = doc.to_array([LOWER, LEMMA]).astype(np.uint64, copy=False).ravel()  # lower, lemma, lower, ...
        pos = np.minimum(np.searchsorted(self._keys, vals), len(self._keys) - 1)
        hit = np.flatnonzero(self._keys[pos] == vals)
        if not len(hit):
            return none, none
        sent = np.searchsorted(starts, hit // 2, side="right") - 1
        new = np.empty(len(sent), dtype=bool)  # this hit is the first of its sentence
        new[0] = True
        np.not_equal(sent[1:], sent[:-1], out=new[1:])
        first = np.flatnonzero(new)
        met = np.bitwise_or.reduceat(self._bits[pos[hit]], first, axis=0)
        passed = np.bitwise_and.reduce(met.reshape(len(first), self._slots, -1) | self._always, axis=1)
        row, word = np.nonzero(passed)
        flags = np.unpackbits(passed[row, word].view(np.uint8).reshape(-1, 8), axis=1, bitorder="little")
        i, bit = np.nonzero(flags)
        return sent[first][row[i]], word[i] * 64 + bit

    def _anchored_matches(self, doc: Doc) -> list[tuple[int, int, int]]:
        sentences = sentence_bounds(doc)
        starts = np.array([a for a, _ in sentences], dtype=np.int64)
        out = []
        for sid, pid in zip(*(a.tolist() for a in self._gated_pairs(doc, starts))):
            s, e = sentences[sid]
            out.extend((k, a + s, b + s) for k, a, b in self.patterns[pid](doc[s:e]))
        return out


def _pack(flags: np.ndarray) -> np.ndarray:
    """Boolean array (last axis a multiple of 64) -> 8 flags a byte, viewed as uint64
    words so that OR and AND take 64 flags at a time. Read back with
    ``np.unpackbits(words.view(np.uint8), bitorder="little")``."""
    return np.packbits(flags, axis=-1, bitorder="little").view(np.uint64)


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
        texts = [normalise(r.text) for r in good]
        docs = [self._context(self._matcher(d)) for d in self.nlp.pipe(texts)]
        preds = self.classifier.predict_docs(docs, texts) if self.classifier and docs else [None] * len(docs)
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
            # Built without re-validation: every field comes from the loaded (validated)
            # lexicon and the doc's own offsets.
            by_cat[ind.category].append(
                Evidence.model_construct(
                    start=span.start_char, end=span.end_char, text=text[span.start_char:span.end_char],
                    category=ind.category, indicator=ind.id, source="lexicon", weight=ind.weight,
                    context=flags, suppressed=bool(ctx is not None and ctx.suppressed))
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
