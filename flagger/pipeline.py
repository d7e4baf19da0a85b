"""Build the spaCy pipeline flagger runs on: fast tokenizer, sentences, lemmas.

No parser or tagger: the lexicon and context path must stay above 100k words/s on
one core, and the blank English tokenizer plus a sentencizer does that. Lemmas come
from spaCy's English lookup table (``spacy-lookups-data``), keyed on the lower-cased
token, so lexicon patterns can say ``LEMMA: go`` and match "Went", "gone", "going".
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
import spacy
from spacy.attrs import IS_SPACE, LEMMA, LOWER, ORTH, SENT_START
from spacy.language import Language
from spacy.tokens import Doc

# Single characters mapped to single characters, so offsets into the normalised text
# are offsets into the original. Curly quotes and dashes are common in pasted notes.
_NORMALISE = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201b": "'",
        "\u2032": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u2212": "-",
        "\u00a0": " ",
        "\u2009": " ",
        "\u202f": " ",
        "\t": " ",
    }
)


def in_sorted(values: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    """Boolean mask of ``values`` found in the pre-sorted ``sorted_keys``.

    A binary search per value; ``np.isin`` re-sorts the key array on every call,
    which cost more than the matching itself on short notes.
    """
    if not len(sorted_keys):
        return np.zeros(len(values), dtype=bool)
    pos = np.searchsorted(sorted_keys, values)
    pos[pos == len(sorted_keys)] = 0
    return sorted_keys[pos] == values


def normalise(text: str) -> str:
    """Return ``text`` with quotes, dashes and odd spaces made plain, same length."""
    out = text.translate(_NORMALISE)
    assert len(out) == len(text)
    return out


class LookupLemmatizer:
    """Sets ``token.lemma`` from the English lookup table, on the lower-cased form.

    spaCy's own lookup lemmatizer keys on the exact text, so sentence-initial "Went"
    would not become "go". Works on whole arrays: one lookup per distinct word, cached
    per process, and the per-token lookups are a ``map`` over the cache (a Python
    loop per token cost a third of the scan time).
    """

    def __init__(self, nlp: Language):
        from spacy.lookups import load_lookups

        table = load_lookups("en", ["lemma_lookup"]).get_table("lemma_lookup")
        strings = nlp.vocab.strings

        class LemmaCache(dict):
            """LOWER hash -> LEMMA hash, filled on first sight of a word."""

            def __missing__(self, key: int) -> int:
                low = strings[key]
                lem = self[key] = strings.add(table.get(low, low))
                return lem

        self._cache = LemmaCache()

    def __call__(self, doc: Doc) -> Doc:
        if not len(doc):
            return doc
        lemmas = list(map(self._cache.__getitem__, doc.to_array(LOWER).tolist()))
        doc.from_array([LEMMA], np.array(lemmas, dtype=np.uint64).reshape(-1, 1))
        return doc


class FastSentencizer:
    """Sentence starts from punctuation, computed on arrays.

    The rule is spaCy's Sentencizer rule (a sentence starts after ``.``, ``!``, ``?``
    and the like, once a run of such tokens ends) plus a start after a blank line, but
    vectorised: spaCy's per-token loop was 15% of the scan time.
    """

    PUNCT = (".", "!", "?", "...", "!!", "??", "?!", "!?", "。")

    def __init__(self, nlp: Language):
        self._punct = np.array(sorted(nlp.vocab.strings.add(p) for p in self.PUNCT), dtype=np.uint64)

    def __call__(self, doc: Doc) -> Doc:
        n = len(doc)
        if not n:
            return doc
        arr = doc.to_array([ORTH, IS_SPACE]).astype(np.uint64)
        is_p = in_sorted(arr[:, 0], self._punct)
        starts = np.full(n, -1, dtype=np.int64)
        starts[0] = 1
        if n > 1:
            starts[1:][is_p[:-1] & ~is_p[1:]] = 1
            # A line break also ends a sentence: notes are often one line per entry.
            for i in np.flatnonzero(arr[:-1, 1] == 1).tolist():
                if "\n" in doc[i].text:
                    starts[i + 1] = 1
        doc.from_array([SENT_START], starts.reshape(-1, 1).astype(np.uint64))
        return doc


@Language.factory("flagger_sentences")
def _make_sentences(nlp: Language, name: str) -> FastSentencizer:
    return FastSentencizer(nlp)


@Language.factory("flagger_lemma")
def _make_lemma(nlp: Language, name: str) -> LookupLemmatizer:
    return LookupLemmatizer(nlp)


def build_base_nlp() -> Language:
    """A blank English pipeline with sentence splitting and lookup lemmas."""
    nlp = spacy.blank("en")
    nlp.add_pipe("flagger_sentences")
    nlp.add_pipe("flagger_lemma")
    return nlp


@lru_cache(maxsize=1)
def shared_base_nlp() -> Language:
    """One base pipeline per process (for helpers such as ``context.assess``)."""
    return build_base_nlp()


def sentence_bounds(doc: Doc) -> list[tuple[int, int]]:
    """Token [start, end) of each sentence, from the SENT_START array.

    ``doc.sents`` and ``token.sent`` walk the tokens in Python on every call, which made
    them the slowest step of a scan; this reads the array once.
    """
    n = len(doc)
    if not n:
        return []
    starts = np.flatnonzero(doc.to_array([SENT_START]).astype(np.int64) == 1).tolist()
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    return list(zip(starts, starts[1:] + [n]))


def word_count(text: str) -> int:
    """Whitespace word count, the unit the speed targets are stated in."""
    return len(text.split())


# C0 control characters other than tab, line feed and carriage return, and DEL.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def is_printable_text(text: str) -> bool:
    """False when the text is mostly control characters (a binary blob, not a note)."""
    if not text:
        return True
    bad = len(_CONTROL.findall(text))
    return bad <= max(2, len(text) // 100)
