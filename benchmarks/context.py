"""Context engine benchmark: accuracy on labelled cases and speed on long notes.

    python benchmarks/context.py                    # accuracy + speed, table on stdout
    python benchmarks/context.py --json out.json    # also write the figures

Accuracy: per-attribute precision/recall/F1 on benchmarks/context_cases.jsonl
(hand-written: half general clinical English, half safeguarding notes), side by side
with negspaCy 1.1 (termset ``en_clinical``) for negation, the only attribute it has.

Speed: the whole lexicon + context path (Flagger with model="none") on long generated
notes, one process, words/s. The target is >= 100,000 words/s on one core.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).parent
ATTRS = ["negated", "hypothetical", "historical", "other_person", "professional", "uncertain"]


def load_cases(path: Path) -> list[dict]:
    cases = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            c = json.loads(line)
            occ = c.get("occurrence", 1)
            i = -1
            for _ in range(occ):
                i = c["text"].index(c["target"], i + 1)
            c["_start"], c["_end"] = i, i + len(c["target"])
            cases.append(c)
    return cases


def prf(tp: int, fp: int, fn: int) -> dict:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 3), "recall": round(r, 3), "f1": round(f, 3), "tp": tp, "fp": fp, "fn": fn}


def score(cases: list[dict], predict) -> dict:
    tp, fp, fn = Counter(), Counter(), Counter()
    for c in cases:
        pred = predict(c)
        for a in ATTRS:
            if a not in pred:
                continue
            g = bool(c["expected"].get(a, False))
            if pred[a] and g:
                tp[a] += 1
            elif pred[a]:
                fp[a] += 1
            elif g:
                fn[a] += 1
    return {a: prf(tp[a], fp[a], fn[a]) for a in ATTRS if (tp[a] + fp[a] + fn[a]) or a in ("negated",)}


def flagger_predict():
    from flagger.context import assess

    def predict(c):
        r = assess(c["text"], c["_start"], c["_end"])
        return {a: getattr(r, a) for a in ATTRS}

    return predict


def negspacy_predict():
    """negspaCy marks negation on doc.ents; we make the target the only entity."""
    import spacy
    from negspacy.negation import Negex  # noqa: F401  (registers the factory)
    from negspacy.termsets import termset

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.add_pipe("negex", config={"neg_termset": termset("en_clinical").get_patterns(), "ent_types": ["TARGET"]})

    def predict(c):
        doc = nlp.make_doc(c["text"])
        span = doc.char_span(c["_start"], c["_end"], alignment_mode="expand")
        doc.ents = [doc.char_span(span.start_char, span.end_char, label="TARGET")]
        for _, proc in nlp.pipeline:
            doc = proc(doc)
        return {"negated": bool(doc.ents[0]._.negex)}

    return predict


def speed(n_notes: int, words_per_note: int, seed: int = 0) -> dict:
    from flagger import Flagger

    sys.path.insert(0, str(HERE))
    from generate_export import make_note  # noqa: E402

    rng = random.Random(seed)
    notes = [make_note(rng, words_per_note) for _ in range(n_notes)]
    words = sum(len(t.split()) for t in notes)
    fl = Flagger(model="none")
    list(fl.scan_many({"id": str(i), "text": t} for i, t in enumerate(notes[:50])))  # warm-up
    t0 = time.perf_counter()
    flagged = sum(1 for r in fl.scan_many({"id": str(i), "text": t} for i, t in enumerate(notes)) if r.concerns)
    dt = time.perf_counter() - t0
    return {"notes": n_notes, "words": words, "seconds": round(dt, 2), "words_per_s": round(words / dt),
            "notes_per_s": round(n_notes / dt, 1), "flagged": flagged}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=Path, default=HERE / "context_cases.jsonl")
    ap.add_argument("--notes", type=int, default=2000, help="long notes for the speed run")
    ap.add_argument("--words", type=int, default=600, help="words per long note")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--no-speed", action="store_true")
    args = ap.parse_args()

    cases = load_cases(args.cases)
    counts = {a: sum(1 for c in cases if c["expected"].get(a)) for a in ATTRS}
    ours = score(cases, flagger_predict())
    neg = score(cases, negspacy_predict())
    by_domain = {}
    for dom in sorted({c.get("domain", "all") for c in cases}):
        sub = [c for c in cases if c.get("domain", "all") == dom]
        by_domain[dom] = {"flagger": score(sub, flagger_predict()), "negspacy": score(sub, negspacy_predict())}
    print(f"{len(cases)} cases; positives per attribute: {counts}")
    print(f"{'attribute':14} {'flagger P':>9} {'R':>6} {'F1':>6}   {'negspaCy P':>10} {'R':>6} {'F1':>6}")
    for a in ATTRS:
        o = ours.get(a, {})
        n = neg.get(a)
        ns = f"{n['precision']:>10.3f} {n['recall']:>6.3f} {n['f1']:>6.3f}" if n else f"{'n/a':>10} {'':>6} {'':>6}"
        print(f"{a:14} {o.get('precision', 0):>9.3f} {o.get('recall', 0):>6.3f} {o.get('f1', 0):>6.3f}   {ns}")
    for dom, d in by_domain.items():
        print(f"  negation, {dom}: flagger F1 {d['flagger']['negated']['f1']:.3f}, negspaCy F1 {d['negspacy']['negated']['f1']:.3f}")
    out = {"cases": len(cases), "positives": counts, "flagger": ours, "negspacy": neg, "by_domain": by_domain}
    if not args.no_speed:
        sp = speed(args.notes, args.words)
        print(f"speed (lexicons + context, 1 process): {sp['words_per_s']:,} words/s, "
              f"{sp['notes_per_s']} notes/s over {sp['notes']} notes of ~{args.words} words")
        out["speed"] = sp
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
