"""Build the labelled corpus from the hand-written raw files, with fixed splits.

    python corpus/build.py

Reads corpus/raw/*.jsonl (one file per voice group), checks every record, turns each
evidence substring into character offsets, and assigns a fixed train/dev/test split
of about 70/15/15 from a hash of the note id, so a note's split never changes when
notes are added (every category lands in every split; see the counts printed).
Writes corpus/notes.jsonl (everything, with a "split" field) and corpus/{train,dev,
test}.jsonl in the GOLD format `flagger evaluate` reads.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))
from flagger.categories import CATEGORY_KEYS  # noqa: E402


def split_of(note_id: str) -> str:
    h = int(hashlib.sha256(f"flagger-corpus-v1:{note_id}".encode()).hexdigest(), 16) % 100
    return "train" if h < 70 else "dev" if h < 85 else "test"


def spans_for(text: str, label: str, substrings: list[str]) -> list[dict]:
    out = []
    for sub in substrings:
        i = text.find(sub)
        if i < 0:
            raise ValueError(f"evidence for {label!r} not found in the text")
        out.append({"label": label, "start": i, "end": i + len(sub), "text": sub})
    return out


def main() -> None:
    # `--check FILE...`: validate only those raw files and write nothing (lets several
    # writers check their own file while others are still writing theirs).
    check_only = [Path(a) for a in sys.argv[2:]] if sys.argv[1:2] == ["--check"] else None
    notes, problems = [], []
    seen: set[str] = set()
    for path in check_only or sorted((HERE / "raw").glob("*.jsonl")):
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            rec = json.loads(line)
            where = f"{path.name}:{lineno} ({rec.get('id')})"
            if rec["id"] in seen:
                problems.append(f"{where}: duplicate id")
            seen.add(rec["id"])
            labels = sorted(set(rec.get("labels", [])))
            bad = [l for l in labels if l not in CATEGORY_KEYS]
            if bad:
                problems.append(f"{where}: unknown labels {bad}")
            ev = rec.get("evidence", {})
            if set(ev) != set(labels):
                problems.append(f"{where}: evidence keys {sorted(ev)} differ from labels {labels}")
            try:
                spans = [s for l in labels for s in spans_for(rec["text"], l, ev.get(l, []))]
            except ValueError as exc:
                problems.append(f"{where}: {exc}")
                continue
            notes.append({
                "id": rec["id"], "text": rec["text"], "labels": labels,
                "evidence": {l: ev[l] for l in labels}, "spans": spans,
                "voice": rec.get("voice"), "kind": rec.get("kind"), "source": path.stem,
                "split": split_of(rec["id"]),
            })
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)
    if check_only:
        words = [len(n["text"].split()) for n in notes]
        print(f"OK: {len(notes)} notes, {sum(1 for n in notes if not n['labels'])} with no concern, "
              f"words {min(words, default=0)}-{max(words, default=0)}; "
              + ", ".join(f"{k} {sum(k in n['labels'] for n in notes)}" for k in CATEGORY_KEYS))
        short = [n["id"] for n in notes if not 40 <= len(n["text"].split()) <= 250]
        if short:
            print(f"outside 40-250 words: {short}", file=sys.stderr)
            sys.exit(1)
        return
    with open(HERE / "notes.jsonl", "w", encoding="utf-8") as fh:
        for n in notes:
            fh.write(json.dumps(n, ensure_ascii=False) + "\n")
    for split in ("train", "dev", "test"):
        with open(HERE / f"{split}.jsonl", "w", encoding="utf-8") as fh:
            for n in notes:
                if n["split"] == split:
                    fh.write(json.dumps({k: n[k] for k in ("id", "text", "labels", "evidence", "kind", "source")},
                                        ensure_ascii=False) + "\n")
    c = Counter(n["split"] for n in notes)
    print(f"{len(notes)} notes: {dict(c)}")
    # Per split, as the data card's table (ready to paste).
    print("\n| split | notes | no concern | " + " | ".join(CATEGORY_KEYS) + " |")
    print("|---|---|---|" + "---|" * len(CATEGORY_KEYS))
    for split in ("train", "dev", "test"):
        sel = [n for n in notes if n["split"] == split]
        lab = Counter(l for n in sel for l in n["labels"])
        print(f"| {split} | {len(sel)} | {sum(1 for n in sel if not n['labels'])} | "
              + " | ".join(str(lab[k]) for k in CATEGORY_KEYS) + " |")
    words = sorted(len(n["text"].split()) for n in notes)
    kinds = Counter(n["kind"] for n in notes)
    none = sum(1 for n in notes if not n["labels"])
    print(f"\nwords: median {words[len(words) // 2]}, min {words[0]}, max {words[-1]}; "
          f"no concern {none} ({100 * none / len(notes):.0f}%); kinds: "
          + ", ".join(f"{k} {v}" for k, v in kinds.most_common()))
    by_source = Counter(n["source"] for n in notes)
    print("per source file: " + ", ".join(f"{k} {v}" for k, v in sorted(by_source.items())))


if __name__ == "__main__":
    main()
