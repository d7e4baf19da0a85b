"""The context engine: ConText-style modifiers and their scope, on spaCy 3.8.

A *trigger* ("no signs of", "if", "in 2019", "her friend's", "training") sets one
context attribute on the target spans inside its *scope*:

* ``negated``      the target is denied or absent
* ``hypothetical`` conditional, advice, plans, questions
* ``historical``   in the past or resolved
* ``other_person`` about someone outside the subject and their household
* ``professional`` a training, organisational or professional usage
* ``uncertain``    possible, suspected, at risk of: recorded, but it does not
  suppress, because a suspected harm is what a DSL needs to see

Scope runs forward, backward or both from the trigger, up to ``max_scope`` tokens,
and stops at the sentence end, at a list boundary (``;`` or a line break) and at a
terminating word ("but", "however", "apart from"). Pseudo-triggers ("not unusual",
"no doubt", "cannot rule out") are matched only so that the shorter trigger inside
them does not fire. A terminator marked ``cancel: true`` found at the end of a target
or just after it also clears its attributes from that target: an object pronoun ("mum's friend hit *him*")
makes the case child the one harmed, so the hit is not about another person, and
"since Monday" after "history of X" makes X current, not historical.

Decisions on boundary words: "at risk of", "may be", "possible" are ``uncertain`` (a present
possibility a DSL must see); "could/may/might develop", "can lead to", "should X occur",
"if he were", "will start" are ``hypothetical`` (a future or conditional event); a bare
"would" is not a trigger, because "dad would hit him" is habitual past, not a condition.
A relative's own condition ("mother has diabetes", "his brother was diagnosed with X") is
``other_person``; mum, dad and a parent's partner are the case household and are not, and
an object pronoun after the hit ("hit him", "touched her.") cancels ``other_person``.

The algorithm follows ConText (Harkema et al. 2009) and NegEx (Chapman et al. 2001);
it is written here rather than taken from medspaCy because medspaCy pins spaCy < 3.8.
Rules are data (``lexicons/context.yml``), validated on load.

Everything that decides scope is a plain function over token indices so it can be
tested without a pipeline; the spaCy component only finds triggers and annotates.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from spacy.language import Language
from spacy.matcher import Matcher, PhraseMatcher
from spacy.attrs import IDX, LEMMA, LENGTH, LOWER, ORTH
from spacy.tokens import Doc, Span

from .errors import LexiconError
from .lexicon import CONTEXT_FILE, default_lexicon_dir, load_yaml
from .schema import CONTEXT_ATTRIBUTES, SUPPRESSING_ATTRIBUTES, ContextAttribute, ContextFlag

Direction = Literal["forward", "backward", "bidirectional", "terminate", "pseudo"]


class ContextRuleModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z_]+\.[a-z0-9_]+$")
    literal: str | None = None
    pattern: list[dict[str, Any]] | None = None
    attribute: ContextAttribute | None = None
    direction: Direction
    max_scope: int = Field(8, ge=1, le=60)
    applies_to: list[ContextAttribute] | None = None
    cancel: bool = False
    source: str

    @model_validator(mode="after")
    def _shape(self) -> "ContextRuleModel":
        if (self.literal is None) == (self.pattern is None):
            raise ValueError("give exactly one of 'literal' or 'pattern'")
        if self.literal is not None and not self.literal.strip():
            raise ValueError("'literal' is blank")
        if self.direction in ("forward", "backward", "bidirectional") and self.attribute is None:
            raise ValueError(f"a {self.direction} rule needs an 'attribute'")
        if self.direction in ("terminate", "pseudo") and self.attribute is not None:
            raise ValueError(f"a {self.direction} rule sets no 'attribute' (use 'applies_to' to limit a terminator)")
        if self.applies_to is not None and self.direction != "terminate":
            raise ValueError("'applies_to' is only for terminate rules")
        if self.cancel and self.direction != "terminate":
            raise ValueError("'cancel' is only for terminate rules")
        if self.cancel and not self.applies_to:
            raise ValueError("a cancel terminator needs 'applies_to' (the attributes it clears)")
        return self


class ContextFileModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = Field(pattern=r"^\d+\.\d+\.\d+$")
    description: str | None = None
    sources: dict[str, str] = Field(min_length=1)
    rules: list[ContextRuleModel] = Field(min_length=1)


@dataclass(frozen=True)
class ContextRule:
    id: str
    attribute: str | None
    direction: str
    max_scope: int
    applies_to: frozenset[str]
    literal: str | None
    pattern: tuple[dict[str, Any], ...] | None
    source: str
    cancel: bool = False  # a terminator that also clears its attributes from a target it ends


@dataclass(frozen=True)
class ContextRules:
    version: str
    rules: tuple[ContextRule, ...]
    sources: dict[str, str]


def load_context_rules(path: Path | str | None = None) -> ContextRules:
    """Load and validate the context rules file.

    Raises:
        LexiconError: naming the file, the rule and the field of every problem.
    """
    p = Path(path) if path is not None else default_lexicon_dir() / CONTEXT_FILE
    name = p.name
    try:
        data = load_yaml(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LexiconError([f"{name}: context rules file not found"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise LexiconError([f"{name}: not valid YAML{at}"]) from None
    if not isinstance(data, dict):
        raise LexiconError([f"{name}: expected a mapping with version, sources, rules"])
    try:
        model = ContextFileModel.model_validate(data)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            loc = e["loc"]
            if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
                rid = None
                try:
                    rid = data["rules"][loc[1]].get("id")
                except (KeyError, IndexError, TypeError, AttributeError):
                    pass
                who = f"rule {rid!r} (rules[{loc[1]}])" if rid else f"rules[{loc[1]}]"
                fld = ".".join(str(x) for x in loc[2:]) or "(entry)"
                problems.append(f"{name}: {who} field '{fld}': {e['msg']}")
            else:
                problems.append(f"{name}: field '{'.'.join(str(x) for x in loc)}': {e['msg']}")
        raise LexiconError(problems) from None
    problems = []
    seen: set[str] = set()
    from spacy.lang.en import English

    check = Matcher(English().vocab, validate=True)
    for i, r in enumerate(model.rules):
        if r.id in seen:
            problems.append(f"{name}: rule {r.id!r} (rules[{i}]) field 'id': duplicate id")
        seen.add(r.id)
        if r.source not in model.sources:
            problems.append(f"{name}: rule {r.id!r} field 'source': {r.source!r} is not a key of 'sources'")
        if r.pattern is not None:
            try:
                check.add(r.id, [r.pattern])
            except (ValueError, KeyError, TypeError) as exc:
                problems.append(f"{name}: rule {r.id!r} field 'pattern': {str(exc).strip().splitlines()[0][:200]}")
    if problems:
        raise LexiconError(problems)
    rules = tuple(
        ContextRule(
            id=r.id,
            attribute=r.attribute,
            direction=r.direction,
            max_scope=r.max_scope,
            applies_to=frozenset(r.applies_to or CONTEXT_ATTRIBUTES),
            literal=r.literal,
            pattern=tuple(r.pattern) if r.pattern is not None else None,
            source=r.source,
            cancel=r.cancel,
        )
        for r in model.rules
    )
    return ContextRules(version=model.version, rules=rules, sources=dict(model.sources))


# ---------------------------------------------------------------------------
# Pure functions over token indices


@dataclass(frozen=True)
class Trigger:
    """A matched rule: tokens [start, end) in the doc, characters [start_char, end_char)."""

    rule: ContextRule
    start: int
    end: int
    start_char: int
    end_char: int
    # The matched words. Given as a string, or read from ``doc`` when first asked for:
    # a note has ~100 triggers (terminators, pronouns) and only the few that flag a hit
    # ever show their text.
    text_: str | None = field(default=None, compare=False, repr=False)
    doc: Doc | None = field(default=None, compare=False, repr=False)

    @property
    def text(self) -> str:
        if self.text_ is None:
            return self.doc[self.start:self.end].text if self.doc is not None else ""
        return self.text_


@dataclass(frozen=True)
class DocChars:
    """Per-doc arrays the context engine reads many times: each token's character
    offset and length, and the tokens that start a list item."""

    idx: Any
    length: Any
    breaks: list[int]


def doc_chars(doc: Doc) -> DocChars:
    """:class:`DocChars` for ``doc``, from ``to_array`` rather than token objects.

    ``breaks``: token indices i >= 1 whose previous token is ';' or holds a line
    break (spaCy keeps line breaks as whitespace tokens; a token's trailing
    whitespace is at most one space).
    """
    a = doc.to_array([IDX, LENGTH, ORTH])
    strings = doc.vocab.strings
    semi = strings[";"] if ";" in strings else None
    breaks = [i for i, h in enumerate(a[:-1, 2].tolist(), 1) if h == semi or "\n" in strings[h]]
    return DocChars(idx=a[:, 0], length=a[:, 1], breaks=breaks)


@dataclass
class Scope:
    trigger: Trigger
    start: int  # token index, inclusive
    end: int  # token index, exclusive


def resolve_overlaps(triggers: Sequence[Trigger]) -> list[Trigger]:
    """Drop a trigger that overlaps a longer one (a pseudo "not unusual" beats "not").

    Triggers on exactly the same tokens all stay (one literal can be both a forward
    and a backward rule). Between overlapping triggers of equal length the earlier
    start wins. Returned in document order.
    """
    ordered = sorted(triggers, key=lambda t: (-(t.end - t.start), t.start))
    taken: list[Trigger] = []
    owner: dict[int, tuple[int, int]] = {}  # token -> the (start, end) of the taken trigger on it
    for t in ordered:
        here = (t.start, t.end)
        if any(owner.get(i, here) != here for i in range(t.start, t.end)):
            continue
        taken.append(t)
        for i in range(t.start, t.end):
            owner[i] = here
    return sorted(taken, key=lambda t: (t.start, t.end))


def segment_bounds(n_tokens: int, boundaries: Sequence[int], index: int) -> tuple[int, int]:
    """The [start, end) of the segment holding token ``index``.

    ``boundaries`` are sorted token indices that start a new segment (sentence starts,
    tokens after ';' or a line break).
    """
    pos = bisect.bisect_right(boundaries, index)
    start = boundaries[pos - 1] if pos > 0 else 0
    end = boundaries[pos] if pos < len(boundaries) else n_tokens
    return start, end


def compute_scope(trigger: Trigger, seg: tuple[int, int], terminators: Sequence[Trigger]) -> Scope:
    """Scope of one modifying trigger inside its segment, cut at terminators."""
    rule = trigger.rule
    seg_start, seg_end = seg
    start, end = trigger.start, trigger.end
    if rule.direction in ("forward", "bidirectional"):
        end = min(seg_end, trigger.end + rule.max_scope)
        for term in terminators:
            if rule.attribute in term.rule.applies_to and trigger.end <= term.start < end:
                end = term.start
                break
    if rule.direction in ("backward", "bidirectional"):
        start = max(seg_start, trigger.start - rule.max_scope)
        for term in reversed(terminators):
            if rule.attribute in term.rule.applies_to and start <= term.start < trigger.start:
                start = term.end
                break
    return Scope(trigger=trigger, start=start, end=end)


def flags_for_target(scopes: Iterable[Scope], start: int, end: int) -> dict[str, Trigger]:
    """Which attributes apply to the target tokens [start, end), and their triggers.

    A trigger wholly inside the target does not modify it (the "no" inside the
    indicator "no food in the house"); one that only overlaps its start does ("No signs
    of" before the indicator "signs of neglect"). Where several triggers set one
    attribute, the nearest wins.

    A cancel terminator (``rule.cancel``) with a token after the target's first token
    and starting less than its ``max_scope`` tokens after the target's end (in the same
    segment: its scope's ``start`` is the segment start) clears the attributes in its
    ``applies_to``.
    """
    found: dict[str, tuple[int, Trigger]] = {}
    cleared: set[str] = set()
    for sc in scopes:
        t = sc.trigger
        if t.rule.cancel:
            if t.end - 1 > start and t.start < end + t.rule.max_scope and sc.start <= start:
                cleared |= t.rule.applies_to
            continue
        if start <= t.start and t.end <= end:
            continue
        if sc.start < end and start < sc.end:
            dist = start - t.end if t.end <= start else t.start - end
            attr = t.rule.attribute
            if attr not in found or dist < found[attr][0]:
                found[attr] = (dist, t)
    return {a: t for a, (_, t) in found.items() if a not in cleared}


# ---------------------------------------------------------------------------
# The engine and the spaCy component


@dataclass
class ContextAssessment:
    """The context of one target span (the answer of :func:`assess`)."""

    start: int
    end: int
    flags: list[ContextFlag] = field(default_factory=list)

    def _has(self, attr: str) -> bool:
        return any(f.attribute == attr for f in self.flags)

    @property
    def negated(self) -> bool:
        return self._has("negated")

    @property
    def hypothetical(self) -> bool:
        return self._has("hypothetical")

    @property
    def historical(self) -> bool:
        return self._has("historical")

    @property
    def other_person(self) -> bool:
        return self._has("other_person")

    @property
    def professional(self) -> bool:
        return self._has("professional")

    @property
    def uncertain(self) -> bool:
        return self._has("uncertain")

    @property
    def suppressed(self) -> bool:
        """True when any attribute that stops a hit raising a concern is set."""
        return any(f.attribute in SUPPRESSING_ATTRIBUTES for f in self.flags)

    def trigger(self, attr: str) -> ContextFlag | None:
        return next((f for f in self.flags if f.attribute == attr), None)

    def as_dict(self) -> dict[str, Any]:
        return {a: self._has(a) for a in CONTEXT_ATTRIBUTES} | {
            "triggers": [f.model_dump() for f in self.flags]
        }


class ContextEngine:
    """Finds triggers in a Doc and works out which spans they modify."""

    def __init__(self, vocab, rules: ContextRules):
        self.rules = rules
        self.version = rules.version
        self._phrase = PhraseMatcher(vocab, attr="LOWER")
        self._matcher = Matcher(vocab)
        self._by_key: dict[int, ContextRule] = {}
        from spacy.lang.en import English

        from .engine import required_literals

        tok = English().tokenizer
        # Token-pattern rules with required literal tokens get their own Matcher and
        # run only on spans holding those tokens (as in the lexicon matcher): the
        # Matcher's IN/REGEX predicates per token were a fifth of the scan time.
        self._gated: list[tuple[Matcher, list[tuple[str, frozenset[int]]]]] = []
        for r in rules.rules:
            key = vocab.strings.add(r.id)
            self._by_key[key] = r
            if r.literal is not None:
                self._phrase.add(r.id, [tok(r.literal)])
                continue
            req = required_literals(r.pattern)
            if req:
                m = Matcher(vocab)
                m.add(r.id, [list(r.pattern)])
                self._gated.append((m, [(k, frozenset(vocab.strings.add(v) for v in vals)) for k, vals in req]))
            else:
                self._matcher.add(r.id, [list(r.pattern)])
        # Each gated matcher is indexed by its least common required token set, so a
        # sentence only checks the matchers whose anchor token it holds (not all of them).
        from spacy.lang.en.stop_words import STOP_WORDS

        from ._common_words import COMMON_WORDS

        def _commonness(values: frozenset[str]) -> tuple[int, int]:
            return (sum(v in COMMON_WORDS or v in STOP_WORDS for v in values), len(values))

        self._anchor: dict[tuple[str, int], list[int]] = {}
        for i, (_, req) in enumerate(self._gated):
            kind, hashes = min(req, key=lambda kv: _commonness(
                frozenset(vocab.strings[h] for h in kv[1])))
            for h in hashes:
                self._anchor.setdefault((kind, h), []).append(i)

    def find_triggers(self, doclike: Doc | Span, arr=None, chars: "DocChars | None" = None) -> list[Trigger]:
        """Every trigger in a Doc or Span, overlaps resolved, in document order.

        Offsets are always token indices into the Doc. ``arr`` is the doc's
        ``to_array([LOWER, LEMMA])`` and ``chars`` its :func:`doc_chars` when the
        caller already has them.
        """
        doc = doclike.doc if isinstance(doclike, Span) else doclike
        base = doclike.start if isinstance(doclike, Span) else 0
        found = list(self._phrase(doclike))  # PhraseMatcher gives Doc offsets
        if len(self._matcher):  # Matcher: Span offsets
            found += [(k, s + base, e + base) for k, s, e in self._matcher(doclike)]
        if self._gated:
            if arr is None:
                arr = doc.to_array([LOWER, LEMMA])
            if isinstance(doclike, Span):
                arr = arr[doclike.start:doclike.end]
            have = {"lower": set(arr[:, 0].tolist()), "lemma": set(arr[:, 1].tolist())}
            anchor = self._anchor
            cands = {i for kind, hs in have.items() for h in hs for i in anchor.get((kind, h), ())}
            for i in sorted(cands):
                m, req = self._gated[i]
                if all(not hashes.isdisjoint(have[kind]) for kind, hashes in req):
                    found += [(k, s + base, e + base) for k, s, e in m(doclike)]
        raw = []
        if found:
            # Character offsets from the doc's IDX/LENGTH arrays: building a Span per
            # trigger to read them was a third of this function's time.
            pos = chars if chars is not None else doc_chars(doc)
            for key, s, e in found:
                a, b = int(pos.idx[s]), int(pos.idx[e - 1] + pos.length[e - 1])
                raw.append(Trigger(self._by_key[key], s, e, a, b, doc=doc))
        return resolve_overlaps(raw)

    @staticmethod
    def boundaries(doc: Doc, start: int = 0, end: int | None = None, chars: "DocChars | None" = None) -> list[int]:
        """Token indices in [start, end) that start a list item (after ';' or a line
        break). Callers pass one sentence at a time, so sentence starts are the
        ``start`` they pass in."""
        end = len(doc) if end is None else end
        breaks = (chars if chars is not None else doc_chars(doc)).breaks
        return breaks[bisect.bisect_left(breaks, max(start, 1)):bisect.bisect_left(breaks, end)]

    def scopes(self, doc: Doc, start: int = 0, end: int | None = None,
               ignore: Sequence[tuple[int, int]] = (),
               sentences: Sequence[tuple[int, int]] | None = None, arr=None,
               chars: "DocChars | None" = None) -> list[Scope]:
        """Scopes of the modifying triggers in tokens [start, end) (default: the whole
        doc), skipping triggers inside ``ignore`` spans. ``sentences`` are the doc's
        sentence bounds, ``arr`` and ``chars`` as for :meth:`find_triggers`, when the
        caller already has them."""
        end = len(doc) if end is None else end
        chars = chars if chars is not None else doc_chars(doc)
        triggers = self.find_triggers(doc[start:end] if (start, end) != (0, len(doc)) else doc, arr, chars)
        if sentences is None:
            from .pipeline import sentence_bounds

            sentences = sentence_bounds(doc)
        sent_starts = [a for a, _ in sentences if start < a < end]
        bounds = sorted({start, *sent_starts, *self.boundaries(doc, start, end, chars)})
        terminators = [t for t in triggers if t.rule.direction == "terminate"]
        out = []
        for t in triggers:
            if t.rule.cancel:
                # Not skipped inside other spans: the "him" of the hit "hit him" cancels.
                out.append(Scope(trigger=t, start=segment_bounds(end, bounds, t.start)[0], end=t.end))
                continue
            if t.rule.direction in ("terminate", "pseudo"):
                continue
            if any(s <= t.start and t.end <= e for s, e in ignore):
                continue
            out.append(compute_scope(t, segment_bounds(end, bounds, t.start), terminators))
        return out

    def assess_spans(self, doc: Doc, spans: Sequence[Span]) -> list[ContextAssessment]:
        """Context of each span. Triggers that fall inside one of the spans are part of
        an indicator ("no food in the house"), not modifiers of the others.

        Scope never crosses a sentence end, so only the sentences holding a span are
        searched for triggers; the rest of a long note costs nothing here.
        """
        from .pipeline import sentence_bounds

        ignore = [(s.start, s.end) for s in spans]
        by_sent: dict[tuple[int, int], list[Scope]] = {}
        bounds = sentence_bounds(doc)
        starts = [a for a, _ in bounds]
        out = []
        arr = doc.to_array([LOWER, LEMMA]) if self._gated and spans else None  # once per doc
        chars = doc_chars(doc) if spans else None
        for s in spans:
            sa, sb = bounds[bisect.bisect_right(starts, s.start) - 1]
            key = (sa, max(sb, s.end))
            if key not in by_sent:
                by_sent[key] = self.scopes(doc, key[0], key[1], ignore=ignore, sentences=bounds, arr=arr,
                                           chars=chars)
            found = flags_for_target(by_sent[key], s.start, s.end)
            flags = [
                ContextFlag(attribute=a, rule=t.rule.id, trigger=t.text, start=t.start_char, end=t.end_char)
                for a, t in sorted(found.items(), key=lambda kv: CONTEXT_ATTRIBUTES.index(kv[0]))
            ]
            out.append(ContextAssessment(start=s.start_char, end=s.end_char, flags=flags))
        return out


if not Span.has_extension("context"):
    Span.set_extension("context", default=None)


@Language.factory(
    "flagger_context",
    default_config={"rules_path": None, "span_keys": ["flagger_hits"], "use_ents": False},
)
def make_context_component(nlp: Language, name: str, rules_path: str | None,
                           span_keys: list[str], use_ents: bool) -> "ContextComponent":
    return ContextComponent(nlp, rules=load_context_rules(rules_path), span_keys=span_keys, use_ents=use_ents)


class ContextComponent:
    """Sets ``span._.context`` (a :class:`ContextAssessment`) on spans in the given
    ``doc.spans`` groups and, with ``use_ents``, on ``doc.ents``."""

    def __init__(self, nlp: Language, *, rules: ContextRules, span_keys: Sequence[str] = ("flagger_hits",),
                 use_ents: bool = False):
        self.engine = ContextEngine(nlp.vocab, rules)
        self.span_keys = list(span_keys)
        self.use_ents = use_ents

    def __call__(self, doc: Doc) -> Doc:
        groups: list[Sequence[Span]] = [doc.spans[k] for k in self.span_keys if k in doc.spans]
        if self.use_ents:
            groups.append(doc.ents)
        for spans in groups:
            if not len(spans):
                continue
            for span, assessment in zip(spans, self.engine.assess_spans(doc, list(spans))):
                span._.context = assessment
        return doc


@lru_cache(maxsize=4)
def _default_engine(rules_path: str | None) -> tuple[Language, ContextEngine]:
    from .pipeline import build_base_nlp

    nlp = build_base_nlp()
    return nlp, ContextEngine(nlp.vocab, load_context_rules(rules_path))


def assess(text: str, start: int, end: int, *, rules_path: str | None = None) -> ContextAssessment:
    """The context of the target ``text[start:end]``.

    Args:
        text: the whole note (or sentence).
        start, end: character offsets of the target (end exclusive).
        rules_path: a context rules file other than the bundled one.

    Returns:
        A :class:`ContextAssessment` with ``negated``, ``hypothetical``,
        ``historical``, ``other_person`` and ``professional`` and the trigger of each.

    Raises:
        ValueError: when the offsets are outside the text.
    """
    if not (0 <= start < end <= len(text)):
        raise ValueError(f"target offsets {start}-{end} are outside a text of length {len(text)}")
    from .pipeline import normalise

    nlp, engine = _default_engine(rules_path)
    doc = nlp(normalise(text))
    span = doc.char_span(start, end, alignment_mode="expand")
    result = engine.assess_spans(doc, [span])[0]
    result.start, result.end = start, end
    return result
