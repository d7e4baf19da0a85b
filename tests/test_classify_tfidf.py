"""The shipped TF-IDF classifier's hand-rolled transform equals scikit-learn's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from flagger.classify import load_classifier

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tfidf():
    clf = load_classifier("tfidf")
    if clf is None:
        pytest.skip("no bundled model")
    return clf


@pytest.mark.parametrize("sentences", [
    ["Mum says he has been going to Swindon on the train.", "Came back with £200 and a second phone."],
    ["", "zzzz qqqq", "a"],  # empty and out-of-vocabulary rows must stay all-zero
    [json.loads(line)["text"] for line in (ROOT / "corpus" / "dev.jsonl").read_text().splitlines()[:40]],
])
def test_tfidf_transform_matches_sklearn(tfidf, sentences):
    counts = tfidf.counter.transform(sentences)
    ours = tfidf._tfidf(counts)
    theirs = tfidf.tfidf.transform(counts)
    assert ours.dtype == theirs.dtype
    assert ours.shape == theirs.shape
    np.testing.assert_array_equal(ours.toarray(), theirs.toarray())


def test_tfidf_note_features_are_pooled_sentence_counts(tfidf):
    sentences = ["No food in the house.", "Bruise on his arm.", "Seen at school today."]
    Xs, Xn = tfidf.featurise(sentences, [0, 0, 1])
    C = tfidf.counter.transform(sentences)
    whole = tfidf.tfidf.transform(
        np.vstack([C[0].toarray() + C[1].toarray(), C[2].toarray()]))
    assert Xs.shape[0] == 3 and Xn.shape[0] == 2
    np.testing.assert_allclose(Xn.toarray(), whole.toarray(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("notes", [
    [["Mum says he has been going to Swindon on the train.", "Came back with £200 and a second phone."]],
    [["", "zzzz qqqq", "a"], ["No food in the house."]],  # empty and out-of-vocabulary sentences
    [[json.loads(line)["text"]] for line in (ROOT / "corpus" / "dev.jsonl").read_text().splitlines()[:60]],
    # a whole note split into sentences, several notes in one call (the batch path)
    [[s + "." for s in json.loads(line)["text"].split(". ")]
     for line in (ROOT / "corpus" / "dev.jsonl").read_text().splitlines()[60:120]],
])
def test_fast_probabilities_match_the_scikit_learn_path(tfidf, notes):
    from flagger.classify import SentenceNoteClassifier

    sentences = [s for n in notes for s in n]
    groups = [i for i, n in enumerate(notes) for _ in n]
    fast_s, fast_n = tfidf.sentence_and_note_proba(sentences, groups)
    ref_s, ref_n = SentenceNoteClassifier.sentence_and_note_proba(tfidf, sentences, groups)
    assert fast_s.shape == ref_s.shape == (len(sentences), 12)
    assert fast_n.shape == ref_n.shape == (len(notes), 12)
    np.testing.assert_allclose(fast_s, ref_s, rtol=0, atol=1e-6)
    np.testing.assert_allclose(fast_n, ref_n, rtol=0, atol=1e-6)
    # and the signal is real: some sentence in the corpus slices scores high somewhere
    if len(notes) > 10:
        assert fast_n.max() > 0.9
