"""Quality benchmark: the figures in models/MODEL_CARD.md and docs/transparency.md.

    .venv/bin/python benchmarks/quality.py            # tables on stdout, JSON in benchmarks/results/
    .venv/bin/python benchmarks/quality.py --external PATH --model tfidf --model minilm
    .venv/bin/python benchmarks/quality.py --update models/MODEL_CARD.md   # refresh the card's tables

Runs exactly the commands a reader can run by hand:

    flagger evaluate corpus/test.jsonl --json ...                       (test split)
    flagger evaluate ../shared/eval/notes_dev.jsonl --json ...          (external check set)

Each gives three systems side by side: the keyword baseline, lexicons + context rules
(``--model none``) and lexicons + context + classifier (``tfidf`` by default). On top of
that it scans both files once more in-process to count what `flagger evaluate` does not:
how often each *kind* of test note (negated, hypothetical, historical, ...) gets a concern
it should not have, and on the external set the false-positive rate on trap notes (a
non-empty ``traps`` field and no labels). It then checks the issue targets on the test
split and prints every figure as markdown, so the model card can be refreshed by pasting.

The external file is an outside check: report it, never tune on it. When it is not
there (a fresh clone without ../shared) that part is skipped and says so.

Writes benchmarks/results/quality.json. No note text is written, only counts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flagger.categories import CATEGORY_KEYS, FOCUS_CATEGORIES  # noqa: E402

TEST = ROOT / "corpus" / "test.jsonl"
EXTERNAL_CANDIDATES = [ROOT.parent / "shared" / "eval" / "notes_dev.jsonl", ROOT / "shared" / "eval" / "notes_dev.jsonl"]

# Issue targets, on the corpus test split.
TARGETS = {
    "focus_recall": 0.90,      # each of FOCUS_CATEGORIES
    "focus_precision": 0.80,
    "macro_f1": 0.85,          # over twelve
    "fp_rate_max": 0.05,       # notes with no concern that get any
    "evidence_overlap": 0.90,
}


def flagger_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("flagger")
    return [str(exe)] if exe.exists() else [sys.executable, "-c", "from flagger.cli import main; main()"]


def shown_cmd(gold: Path, models: list[str]) -> str:
    try:
        g = gold.resolve().relative_to(ROOT)
    except ValueError:
        g = gold
    extra = "".join(f" --model {m}" for m in models if models != ["tfidf"])
    return f".venv/bin/flagger evaluate {g}{extra} --json /tmp/report.json"


def run_evaluate(gold: Path, models: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        cmd = flagger_cmd() + ["evaluate", str(gold), "--json", str(out)]
        for m in models:
            cmd += ["--model", m]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"flagger evaluate failed on {gold}:\n{proc.stderr[-2000:]}")
        report = json.loads(out.read_text())
        report["wall_s"] = round(time.perf_counter() - t0, 1)
        return report


def load_jsonl(path: Path) -> list[dict]:
    return [json.loads(l) for l in path.read_text(encoding="utf-8").splitlines() if l.strip()]


def scan_sets(flagger, notes: list[dict]) -> list[set[str]]:
    return [{c.category for c in r.concerns}
            for r in flagger.scan_many({"id": str(i), "text": n["text"]} for i, n in enumerate(notes))]


def by_kind(notes: list[dict], preds: list[set[str]]) -> dict:
    """Per note kind: notes, notes with any wrongly raised concern, with any concern missed."""
    out: dict[str, Counter] = defaultdict(Counter)
    for n, p in zip(notes, preds):
        k = n.get("kind") or "?"
        gold = set(n["labels"])
        out[k]["notes"] += 1
        out[k]["any_wrong_concern"] += bool(p - gold)
        out[k]["any_missed"] += bool(gold - p)
    return {k: {**v, "wrong_rate": round(v["any_wrong_concern"] / v["notes"], 3),
                "missed_rate": round(v["any_missed"] / v["notes"], 3)} for k, v in sorted(out.items())}


def traps(notes: list[dict], preds: list[set[str]]) -> dict:
    idx = [i for i, n in enumerate(notes) if n.get("traps") and not n["labels"]]
    flagged = [i for i in idx if preds[i]]
    cats = Counter(c for i in flagged for c in preds[i])
    return {"trap_notes": len(idx), "flagged": len(flagged),
            "trap_fp_rate": round(len(flagged) / len(idx), 3) if idx else None,
            "categories_raised": dict(cats.most_common())}


def check_targets(sys_report: dict, baseline: dict) -> list[dict]:
    rows = []
    per = sys_report["per_category"]
    for c in FOCUS_CATEGORIES:
        rows.append({"target": f"{c} recall >= {TARGETS['focus_recall']:.2f}", "value": per[c]["recall"],
                     "met": per[c]["recall"] >= TARGETS["focus_recall"]})
        rows.append({"target": f"{c} precision >= {TARGETS['focus_precision']:.2f}", "value": per[c]["precision"],
                     "met": per[c]["precision"] >= TARGETS["focus_precision"]})
    rows.append({"target": f"macro F1 (12) >= {TARGETS['macro_f1']:.2f}", "value": sys_report["macro_f1"],
                 "met": sys_report["macro_f1"] >= TARGETS["macro_f1"]})
    rows.append({"target": f"FP rate on no-concern notes <= {TARGETS['fp_rate_max']:.2f}",
                 "value": sys_report["false_positive_rate"],
                 "met": sys_report["false_positive_rate"] <= TARGETS["fp_rate_max"]})
    ov = sys_report["evidence_overlap"]
    rows.append({"target": f"evidence overlap >= {TARGETS['evidence_overlap']:.2f}", "value": ov,
                 "met": ov is not None and ov >= TARGETS["evidence_overlap"]})
    gain = round(sys_report["macro_f1"] - baseline["macro_f1"], 3)
    rows.append({"target": "clear margin over keyword baseline (macro F1 gain >= 0.20 and lower FP rate)",
                 "value": gain,
                 "met": gain >= 0.20 and sys_report["false_positive_rate"] < baseline["false_positive_rate"]})
    return rows


# ---------------------------------------------------------------- markdown
def f3(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def md_report(report: dict, title: str, cmd: str) -> str:
    names = list(report["systems"])
    lines = [f"**{title}** ({report['notes']} notes) — `{cmd}`", ""]
    lines.append("| category | support | " + " | ".join(f"{n} P / R / F1" for n in names) + " |")
    lines.append("|---|---:|" + "---|" * len(names))
    first = report["systems"][names[0]]["per_category"]
    for c in CATEGORY_KEYS:
        cells = []
        for n in names:
            m = report["systems"][n]["per_category"][c]
            cells.append(f"{m['precision']:.2f} / {m['recall']:.2f} / {m['f1']:.2f}")
        lines.append(f"| {c} | {first[c]['support']} | " + " | ".join(cells) + " |")
    for n_key, label in (("micro", "micro P / R / F1"),):
        lines.append(f"| **{label}** | | " + " | ".join(
            f"{report['systems'][n][n_key]['precision']:.2f} / {report['systems'][n][n_key]['recall']:.2f} / "
            f"{report['systems'][n][n_key]['f1']:.2f}" for n in names) + " |")
    for key, label in (("macro_f1", "macro F1 (12)"), ("focus_macro_f1", "macro F1 (5 focus)"),
                       ("false_positive_rate", "FP rate, no-concern notes"),
                       ("evidence_overlap", "evidence overlap")):
        lines.append(f"| **{label}** | | " + " | ".join(f3(report["systems"][n][key]) for n in names) + " |")
    clean = report["systems"][names[0]]["no_concern_notes"]
    lines.append("")
    lines.append(f"FP rate = share of the {clean} notes with no gold label that get any concern.")
    return "\n".join(lines)


def md_kinds(kinds: dict[str, dict], names: list[str]) -> str:
    lines = ["| note kind | notes | " + " | ".join(f"{n}: wrongly flagged" for n in names) + " |",
             "|---|---:|" + "---:|" * len(names)]
    first = kinds[names[0]]
    for k in first:
        lines.append(f"| {k} | {first[k]['notes']} | " + " | ".join(
            f"{kinds[n][k]['any_wrong_concern']} ({kinds[n][k]['wrong_rate']:.0%})" for n in names) + " |")
    return "\n".join(lines)


def md_targets(rows: list[dict]) -> str:
    lines = ["| target (test split, lexicon+context+tfidf) | value | met? |", "|---|---:|---|"]
    for r in rows:
        lines.append(f"| {r['target']} | {f3(r['value'])} | {'met' if r['met'] else '**MISSED**'} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--external", type=Path, default=None,
                    help="external GOLD file with a traps field (default: ../shared/eval/notes_dev.jsonl)")
    ap.add_argument("--model", dest="models", action="append", default=None,
                    help="classifier(s) to evaluate beside lexicons only (default: tfidf)")
    ap.add_argument("--update", type=Path, action="append", default=[],
                    help="markdown file whose block between <!-- quality:begin --> and <!-- quality:end --> "
                         "is replaced by the tables (repeatable)")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "quality.json")
    args = ap.parse_args()
    models = args.models or ["tfidf"]
    external = args.external or next((p for p in EXTERNAL_CANDIDATES if p.exists()), None)

    from flagger.engine import Flagger

    manifest = json.loads((ROOT / "models" / "manifest.json").read_text())
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                         text=True).stdout.strip() or os.environ.get("FLAGGER_GIT_HEAD", "not a git checkout")
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "flagger", "lexicons", "models", "corpus"],
                           cwd=ROOT, capture_output=True, text=True).stdout.split("\n")
    result: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "git_head": git,
        "uncommitted_changes": sorted(l[3:] for l in dirty if l.strip()),
        "models_manifest_created": manifest.get("created"),
        "model_versions": {k: (v or {}).get("version") for k, v in manifest["summary"]["models"].items()},
        "thresholds": {k: {c: d["threshold"] for c, d in (v or {}).get("thresholds", {}).items()}
                       for k, v in manifest["summary"]["models"].items()},
        "targets": TARGETS,
    }

    sets = {"test": (TEST, shown_cmd(TEST, models))}
    if external is not None and external.exists():
        sets["external"] = (external, shown_cmd(external, models))
    else:
        print("external check set not found (../shared/eval/notes_dev.jsonl): skipped", file=sys.stderr)

    flaggers = {"lexicon+context": Flagger(model="none")}
    for m in models:
        fl = Flagger(model=m)
        flaggers[f"lexicon+context+{m}" if fl.classifier else f"{m} (not bundled: lexicons only)"] = fl

    for name, (path, cmd) in sets.items():
        print(f"running: {cmd}", file=sys.stderr)
        rep = run_evaluate(path, models)
        rep["command"] = cmd
        notes = load_jsonl(path)
        preds = {n: scan_sets(fl, notes) for n, fl in flaggers.items()}
        from flagger.evaluate import keyword_predict

        preds_kw = [set(keyword_predict(n["text"])) for n in notes]
        allp = {"keyword baseline": preds_kw, **preds}
        if name == "test":
            rep["by_kind"] = {n: by_kind(notes, p) for n, p in allp.items()}
        else:
            rep["traps"] = {n: traps(notes, p) for n, p in allp.items()}
        result[name] = rep

    sysname = next((n for n in result["test"]["systems"] if n.startswith("lexicon+context+")), None)
    if sysname:
        result["test_targets"] = check_targets(result["test"]["systems"][sysname],
                                               result["test"]["systems"]["keyword baseline"])

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")

    # ------------------------------------------------------------ markdown out
    out: list[str] = []
    out.append(f"<!-- generated by `.venv/bin/python benchmarks/quality.py` on {result['date']}, git {git}"
               f"{' + uncommitted changes in ' + ', '.join(result['uncommitted_changes']) if result['uncommitted_changes'] else ''}"
               f"; models: {', '.join(f'{k} {v}' for k, v in result['model_versions'].items())} -->\n")
    out.append(md_report(result["test"], "Test split (corpus/test.jsonl)", result["test"]["command"]))
    out.append("")
    out.append(md_targets(result.get("test_targets", [])))
    out.append("")
    out.append("Test split by note kind — notes given at least one concern not in their gold labels:\n")
    out.append(md_kinds(result["test"]["by_kind"], list(result["test"]["by_kind"])))
    if "external" in result:
        out.append("")
        out.append(md_report(result["external"], "External check set (notes_dev.jsonl, written independently)",
                               result["external"]["command"]))
        out.append("")
        out.append("| system | trap notes (traps, no labels) | given any concern | trap FP rate |")
        out.append("|---|---:|---:|---:|")
        for n, t in result["external"]["traps"].items():
            out.append(f"| {n} | {t['trap_notes']} | {t['flagged']} | {f3(t['trap_fp_rate'])} |")
    md = "\n".join(out)
    print(md)
    for path in args.update:
        text = path.read_text(encoding="utf-8")
        a, b = "<!-- quality:begin -->", "<!-- quality:end -->"
        if a not in text or b not in text:
            sys.exit(f"{path}: no {a} ... {b} block to replace")
        head, rest = text.split(a, 1)
        path.write_text(head + a + "\n" + md + "\n" + b + rest.split(b, 1)[1], encoding="utf-8")
        print(f"updated {path}", file=sys.stderr)
    print(f"\n(written {args.json.relative_to(ROOT) if args.json.is_relative_to(ROOT) else args.json})", file=sys.stderr)


if __name__ == "__main__":
    main()
