"""Regenerate flagger/_common_words.py from the corpus (document frequency >= 3%)."""

import collections
import glob
import json
from pathlib import Path

from flagger.pipeline import build_base_nlp

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    nlp = build_base_nlp()
    low, lem, n = collections.Counter(), collections.Counter(), 0
    for f in sorted(glob.glob(str(ROOT / "corpus/raw/*.jsonl"))):
        for line in open(f, encoding="utf-8"):
            d = nlp(json.loads(line)["text"])
            n += 1
            low.update({t.lower_ for t in d})
            lem.update({t.lemma_ for t in d})
    common = sorted({w for w, c in low.items() if c / n >= 0.03} | {w for w, c in lem.items() if c / n >= 0.03})
    head = (ROOT / "flagger/_common_words.py").read_text().split("COMMON_WORDS = frozenset(")[0]
    body = "    " + repr(common).replace("', '", "',\n     '") + "\n)\n"
    (ROOT / "flagger/_common_words.py").write_text(head + "COMMON_WORDS = frozenset(\n" + body)
    print(f"{len(common)} common words from {n} notes")


if __name__ == "__main__":
    main()
