"""Build the spaCy pipeline flagger runs on: fast tokenizer, sentences, lemmas.

No parser or tagger: the lexicon and context path must stay above 100k words/s on
one core, and the blank English tokenizer plus a sentencizer does that. Lemmas come
from spaCy's English lookup table (``spacy-lookups-data``), keyed on the lower-cased
token, so lexicon patterns can say ``LEMMA: go`` and match "Went", "gone", "going".
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

import spacy
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


def normalise(text: str) -> str:
    """Return ``text`` with quotes, dashes and odd spaces made plain, same length."""
    out = text.translate(_NORMALISE)
    assert len(out) == len(text)
    return out


class LookupLemmatizer:
    """Sets ``token.lemma`` from the English lookup table, on the lower-cased form.

    spaCy's own lookup lemmatizer keys on the exact text, so sentence-initial "Went"
    would not become "go". This is a dictionary lookup with a per-process cache.
    """

    def __init__(self, nlp: Language):
        from spacy.lookups import load_lookups

        self._table = load_lookups("en", ["lemma_lookup"]).get_table("lemma_lookup")
        self._cache: dict[int, int] = {}

    def __call__(self, doc: Doc) -> Doc:
        cache = self._cache
        strings = doc.vocab.strings
        table = self._table
        for tok in doc:
            key = tok.lower
            lem = cache.get(key)
            if lem is None:
                low = tok.lower_
                lem = strings.add(table.get(low, low))
                cache[key] = lem
            tok.lemma = lem
        return doc


@Language.factory("flagger_lemma")
def _make_lemma(nlp: Language, name: str) -> LookupLemmatizer:
    return LookupLemmatizer(nlp)


def build_base_nlp() -> Language:
    """A blank English pipeline with sentence splitting and lookup lemmas."""
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.add_pipe("flagger_lemma")
    return nlp


@lru_cache(maxsize=1)
def shared_base_nlp() -> Language:
    """One base pipeline per process (for helpers such as ``context.assess``)."""
    return build_base_nlp()


def word_count(text: str) -> int:
    """Whitespace word count, the unit the speed targets are stated in."""
    return len(text.split())


def is_printable_text(text: str) -> bool:
    """False when the text is mostly control characters (a binary blob, not a note)."""
    if not text:
        return True
    bad = sum(1 for ch in text if unicodedata.category(ch) == "Cc" and ch not in "\n\r\t")
    return bad <= max(2, len(text) // 100)
