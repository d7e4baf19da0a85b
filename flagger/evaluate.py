"""Evaluation: per-category precision/recall/F1, false-positive rate on notes with
no concern, and evidence overlap, for several systems side by side.

GOLD files are JSONL with ``id``, ``text``, ``labels`` and optional ``evidence``
(``{label: [exact substrings]}``), the format of corpus/{train,dev,test}.jsonl and
of shared/eval/notes_dev.jsonl.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from .categories import CATEGORY_KEYS, FOCUS_CATEGORIES
from .errors import InputFileError

# The way keyword monitors work: a word list per category, no context. Kept here as
# the baseline every other layer must beat; the words are the obvious ones a
# safeguarding team would type into such a tool.
KEYWORDS: dict[str, list[str]] = {
    "neglect": ["neglect", "hungry", "dirty", "unkempt", "smell", "head lice", "no food", "left alone"],
    "cse": ["cse", "sexual exploitation", "groom", "grooming", "older boyfriend", "sexting", "nudes"],
    "county_lines": ["county lines", "drugs", "drug dealing", "cuckoo", "cuckooing", "two phones", "burner"],
    "radicalisation": ["radicalis", "radicaliz", "extremis", "prevent", "terror", "jihad", "far-right", "far right"],
    "fgm": ["fgm", "female genital", "cutting", "cut", "circumcision"],
    "physical_abuse": ["bruise", "bruising", "hit", "slap", "punch", "kick", "burn", "injury", "injuries"],
    "sexual_abuse": ["sexual abuse", "sexually abused", "touched", "rape", "sexual assault"],
    "emotional_abuse": ["emotional abuse", "belittl", "humiliat", "scapegoat", "threaten"],
    "domestic_abuse": ["domestic abuse", "domestic violence", "dv", "coercive", "controlling"],
    "forced_marriage": ["forced marriage", "arranged marriage", "honour", "marry"],
    "trafficking": ["trafficking", "trafficked", "modern slavery", "slavery", "passport"],
    "missing": ["missing", "absent", "absconded", "runaway", "ran away"],
}


def keyword_predict(text: str) -> dict[str, list[tuple[int, int]]]:
    """Keyword baseline: category -> matched character spans (whole words, any case)."""
    out: dict[str, list[tuple[int, int]]] = {}
    low = text.lower()
    for cat, words in KEYWORDS.items():
        for w in words:
            for m in re.finditer(r"\b" + re.escape(w), low):
                out.setdefault(cat, []).append((m.start(), m.end()))
    return out


@dataclass
class GoldNote:
    id: str
    text: str
    labels: set[str]
    evidence: dict[str, list[tuple[int, int]]]


def load_gold(path: Path) -> list[GoldNote]:
    """Read a GOLD JSONL file. Raises InputFileError naming the line of a bad record."""
    notes = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{path}: cannot be read ({exc.__class__.__name__})") from None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            text = rec["text"]
            labels = set(rec.get("labels", []))
        except (json.JSONDecodeError, KeyError, TypeError):
            raise InputFileError(f"{path}: line {i} is not a GOLD record (id, text, labels)") from None
        unknown = labels - set(CATEGORY_KEYS)
        if unknown:
            raise InputFileError(f"{path}: line {i} has unknown labels {sorted(unknown)}")
        ev: dict[str, list[tuple[int, int]]] = {}
        for lab, subs in (rec.get("evidence") or {}).items():
            for sub in subs:
                j = text.find(sub)
                if j >= 0:
                    ev.setdefault(lab, []).append((j, j + len(sub)))
        notes.append(GoldNote(str(rec.get("id", i)), text, labels, ev))
    return notes


# A system maps a list of texts to, per note, {category: [evidence spans]}.
System = Callable[[Sequence[str]], list[dict[str, list[tuple[int, int]]]]]


def flagger_system(flagger) -> System:
    def run(texts: Sequence[str]) -> list[dict[str, list[tuple[int, int]]]]:
        out = []
        for r in flagger.scan_many({"id": str(i), "text": t} for i, t in enumerate(texts)):
            out.append({c.category: [(e.start, e.end) for e in c.evidence] for c in r.concerns})
        return out

    return run


def keyword_system(texts: Sequence[str]) -> list[dict[str, list[tuple[int, int]]]]:
    return [keyword_predict(t) for t in texts]


def score(gold: Sequence[GoldNote], preds: Sequence[dict[str, list[tuple[int, int]]]]) -> dict[str, Any]:
    """Per-category and overall metrics for one system."""
    per: dict[str, dict[str, Any]] = {}
    tp_all = fp_all = fn_all = 0
    overlap_hit = overlap_n = 0
    for cat in CATEGORY_KEYS:
        tp = fp = fn = 0
        for g, p in zip(gold, preds):
            has, want = cat in p, cat in g.labels
            if has and want:
                tp += 1
                if g.evidence.get(cat):
                    overlap_n += 1
                    if any(s < ge and gs < e for s, e in p[cat] for gs, ge in g.evidence[cat]):
                        overlap_hit += 1
            elif has:
                fp += 1
            elif want:
                fn += 1
        P = tp / (tp + fp) if tp + fp else 0.0
        R = tp / (tp + fn) if tp + fn else 0.0
        F = 2 * P * R / (P + R) if P + R else 0.0
        per[cat] = {"precision": round(P, 3), "recall": round(R, 3), "f1": round(F, 3),
                    "tp": tp, "fp": fp, "fn": fn, "support": tp + fn}
        tp_all, fp_all, fn_all = tp_all + tp, fp_all + fp, fn_all + fn
    microP = tp_all / (tp_all + fp_all) if tp_all + fp_all else 0.0
    microR = tp_all / (tp_all + fn_all) if tp_all + fn_all else 0.0
    microF = 2 * microP * microR / (microP + microR) if microP + microR else 0.0
    supported = [c for c in CATEGORY_KEYS if per[c]["support"]]
    clean = [(g, p) for g, p in zip(gold, preds) if not g.labels]
    fpr = sum(1 for g, p in clean if p) / len(clean) if clean else 0.0
    return {
        "per_category": per,
        "micro": {"precision": round(microP, 3), "recall": round(microR, 3), "f1": round(microF, 3)},
        "macro_f1": round(sum(per[c]["f1"] for c in supported) / len(supported), 3) if supported else 0.0,
        "focus_macro_f1": round(sum(per[c]["f1"] for c in FOCUS_CATEGORIES) / len(FOCUS_CATEGORIES), 3),
        "no_concern_notes": len(clean),
        "false_positive_rate": round(fpr, 3),
        "evidence_overlap": round(overlap_hit / overlap_n, 3) if overlap_n else None,
    }


def evaluate(gold: Sequence[GoldNote], systems: dict[str, System]) -> dict[str, Any]:
    texts = [g.text for g in gold]
    return {"notes": len(gold), "systems": {name: score(gold, run(texts)) for name, run in systems.items()}}


def format_table(report: dict[str, Any]) -> str:
    """A plain-text table: one column group per system."""
    names = list(report["systems"])
    head = f"{'category':16}" + "".join(f" | {n[:22]:^22}" for n in names)
    sub = f"{'':16}" + "".join(f" | {'P':>6} {'R':>6} {'F1':>6} " for _ in names)
    lines = [f"{report['notes']} notes", head, sub, "-" * len(sub)]
    for cat in CATEGORY_KEYS:
        row = f"{cat:16}"
        for n in names:
            m = report["systems"][n]["per_category"][cat]
            row += f" | {m['precision']:>6.2f} {m['recall']:>6.2f} {m['f1']:>6.2f} "
        lines.append(row)
    lines.append("-" * len(sub))
    for key, label in (("micro", "micro"),):
        row = f"{label:16}"
        for n in names:
            m = report["systems"][n][key]
            row += f" | {m['precision']:>6.2f} {m['recall']:>6.2f} {m['f1']:>6.2f} "
        lines.append(row)
    for key, label in (("macro_f1", "macro F1"), ("focus_macro_f1", "macro F1 (5 focus)"),
                       ("false_positive_rate", "FP rate, no-concern"), ("evidence_overlap", "evidence overlap")):
        row = f"{label:16}"
        for n in names:
            v = report["systems"][n][key]
            row += f" | {('n/a' if v is None else f'{v:.3f}'):>22}"
        lines.append(row)
    return "\n".join(lines)
