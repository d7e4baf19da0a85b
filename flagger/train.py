"""Train the classifiers reproducibly and choose per-category thresholds.

    flagger train                      # tfidf (and minilm with --minilm)

Fits on the corpus *train* split only. Thresholds are chosen on the *dev* split on the
fused score (lexicon + context + model, see fusion.py). The *test* split is never
read here: `flagger evaluate corpus/test.jsonl` reports on it afterwards.

Threshold rule (written down in models/MODEL_CARD.md): per category, the threshold
with the best F-beta on dev. For the five focus categories (neglect, cse, county_lines,
radicalisation, fgm) beta = BETA (1.5: recall weighs more than precision, because a
missed concern costs more than a false one, but not so much that precision collapses
and DSLs drown in false alerts); for the other seven beta = BETA_OTHER (1.0), because
every category's false alerts add up on the same no-concern notes. Chosen by two-fold
cross-validation on dev (10 random halvings of the 658 dev notes, thresholds picked on
one half and scored on the other): all-1.5 gave macro F1 0.858, focus recall 0.900 and
a no-concern flag rate of 0.061; this rule 0.864, 0.900 and 0.047. Ties go to the
higher threshold.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .categories import CATEGORY_KEYS
from .classify import MANIFEST, TfidfClassifier, sentence_spans, sha256_file
from .fusion import FusionConfig, combine
from .origin import mask_origin

log = logging.getLogger(__name__)

BETA = 1.5  # focus categories
BETA_OTHER = 1.0
FOCUS = ("neglect", "cse", "county_lines", "radicalisation", "fgm")


def beta_for(category: str) -> float:
    """The F-beta weight used to choose ``category``'s threshold on dev."""
    return BETA if category in FOCUS else BETA_OTHER
GRID = [round(x, 3) for x in np.arange(0.20, 0.96, 0.025)]


def load_corpus(path: Path) -> list[dict[str, Any]]:
    return [json.loads(l) for l in Path(path).read_text(encoding="utf-8").splitlines() if l.strip()]


def label_matrix(notes: list[dict]) -> np.ndarray:
    return np.array([[c in n["labels"] for c in CATEGORY_KEYS] for n in notes], dtype=int)


def lexicon_scores(texts: list[str]) -> np.ndarray:
    """Lexicon+context score per category for each text (0 where nothing fires)."""
    from .engine import Flagger

    fl = Flagger(model="none", fusion=FusionConfig(thresholds={c: 1e-6 for c in CATEGORY_KEYS}))
    out = np.zeros((len(texts), len(CATEGORY_KEYS)))
    for i, r in enumerate(fl.scan_many({"id": str(i), "text": t} for i, t in enumerate(texts))):
        for c in r.concerns:
            out[i, CATEGORY_KEYS.index(c.category)] = c.explanation.lexicon_score
    return out


def choose_thresholds(fused: np.ndarray, Y: np.ndarray) -> tuple[dict[str, float], dict[str, dict]]:
    """Per-category threshold with the best dev F-beta (beta from :func:`beta_for`)."""
    clean = Y.sum(axis=1) == 0
    chosen, detail = {}, {}
    for j, c in enumerate(CATEGORY_KEYS):
        b2 = beta_for(c) ** 2
        y = Y[:, j].astype(bool)
        best = None
        for t in GRID:
            p = fused[:, j] >= t
            tp, fp, fn = int((p & y).sum()), int((p & ~y).sum()), int((~p & y).sum())
            P = tp / (tp + fp) if tp + fp else 1.0
            R = tp / (tp + fn) if tp + fn else 0.0
            fb = (1 + b2) * P * R / (b2 * P + R) if P + R else 0.0
            row = (fb, t, P, R, float(p[clean].mean()) if clean.any() else 0.0)
            if best is None or row[:2] > best[:2]:
                best = row
        chosen[c] = best[1]
        detail[c] = {"threshold": best[1], "dev_precision": round(best[2], 3), "dev_recall": round(best[3], 3),
                     "dev_clean_flag_rate": round(best[4], 3), "dev_fbeta": round(best[0], 3),
                     "beta": beta_for(c)}
    return chosen, detail


def train_tfidf(train: list[dict], seed: int):
    from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer
    from sklearn.linear_model import LogisticRegression

    from .pipeline import shared_base_nlp

    nlp = shared_base_nlp()
    sents, groups = [], []
    for i, d in enumerate(nlp.pipe(n["text"] for n in train)):
        for _, _, t in sentence_spans(d):
            sents.append(mask_origin(t))
            groups.append(i)
    counter = CountVectorizer(ngram_range=(1, 2), min_df=2, lowercase=True, dtype=np.float32)
    C = counter.fit_transform(sents)
    from scipy import sparse

    pool = sparse.csr_matrix((np.ones(len(groups)), (groups, np.arange(len(groups)))), shape=(len(train), len(groups)))
    tfidf = TfidfTransformer(sublinear_tf=True)
    Xn = tfidf.fit_transform(pool @ C)
    Y = label_matrix(train)
    heads = {}
    for j, c in enumerate(CATEGORY_KEYS):
        clf = LogisticRegression(C=8.0, class_weight="balanced", max_iter=5000, solver="liblinear", random_state=seed)
        clf.fit(Xn, Y[:, j])
        heads[c] = clf
    return counter, tfidf, heads


def train(corpus: Path, models_dir: Path, *, seed: int = 0, minilm: bool = False) -> dict[str, Any]:
    """Train, choose thresholds on dev, write artefacts + manifest. Returns the summary."""
    import joblib

    random.seed(seed)
    np.random.seed(seed)
    notes = load_corpus(corpus)
    tr = [n for n in notes if n["split"] == "train"]
    dev = [n for n in notes if n["split"] == "dev"]
    corpus_hash = hashlib.sha256(Path(corpus).read_bytes()).hexdigest()[:16]
    models_dir.mkdir(parents=True, exist_ok=True)
    lex_dev = lexicon_scores([n["text"] for n in dev])
    Ydev = label_matrix(dev)
    summary: dict[str, Any] = {"corpus": str(corpus), "corpus_sha256_16": corpus_hash, "seed": seed,
                               "train_notes": len(tr), "dev_notes": len(dev), "models": {}}
    files: dict[str, str] = {}

    counter, tfidf, heads = train_tfidf(tr, seed)
    version = f"tfidf-{corpus_hash[:8]}-s{seed}"
    clf = TfidfClassifier(counter, tfidf, heads, {c: 0.5 for c in CATEGORY_KEYS}, version)
    pdev = clf.predict_texts([n["text"] for n in dev])
    fused = np.vectorize(combine)(lex_dev, pdev)
    th, detail = choose_thresholds(fused, Ydev)
    joblib.dump({"counter": counter, "tfidf": tfidf, "heads": heads, "thresholds": th, "version": version},
                models_dir / "tfidf.joblib", compress=3)
    files["tfidf.joblib"] = sha256_file(models_dir / "tfidf.joblib")
    summary["models"]["tfidf"] = {"version": version, "thresholds": detail}

    if minilm:
        from .minilm import train_minilm

        name, mversion, mdetail = train_minilm(tr, dev, lex_dev, Ydev, models_dir, seed=seed,
                                               choose_thresholds=choose_thresholds)
        files[name] = sha256_file(models_dir / name)
        summary["models"]["minilm"] = {"version": mversion, "thresholds": mdetail}
    else:
        old = models_dir / MANIFEST
        if old.exists():  # keep a previously trained minilm head listed
            prev = json.loads(old.read_text())
            for k, v in prev.get("files", {}).items():
                if k.startswith("minilm") and (models_dir / k).exists() and sha256_file(models_dir / k) == v:
                    files[k] = v
                    summary["models"]["minilm"] = prev.get("summary", {}).get("models", {}).get("minilm")

    manifest = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "files": files,
                "summary": summary}
    (models_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return summary
