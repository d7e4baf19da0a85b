"""Generate a synthetic export of case notes for speed benchmarks (not for training).

    python benchmarks/generate_export.py --notes 20000 -o benchmarks/data/export.jsonl
    python benchmarks/generate_export.py --notes 200000 --format csv -o benchmarks/data/export.csv

Notes are stitched from everyday case-note sentences with a few concern, negated and
historical sentences mixed in, so the matcher and context rules do realistic work.
The output is made by this script and is not committed (benchmarks/data/ is ignored).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from pathlib import Path

ROUTINE = [
    "Home visit completed as planned and mum was in with both children.",
    "Discussed the housing repair request and the damp in the back bedroom.",
    "School report that attendance is 96% this term and homework is handed in.",
    "Contact with dad went ahead on Saturday at the family centre.",
    "Benefits appointment rebooked for next Tuesday at the job centre.",
    "Health visitor weighed the baby, who is feeding well and gaining weight.",
    "The children showed me their bedrooms and new bunk beds.",
    "Nan is helping with the school run three days a week.",
    "Agreed actions reviewed at the core group and most are complete.",
    "He talked about football training and the trip to the coast with his class.",
    "Mum asked for help with the uniform grant and a referral to the food bank.",
    "Dental check booked for both girls after half term.",
    "The family have settled into the new flat and the heating is working.",
    "Plan to review at the next CIN meeting in six weeks.",
    "Letter sent confirming the arrangements for the summer holidays.",
]
CONCERN = [
    "He came back from Swindon with two phones and 300 pounds he would not explain.",
    "She has been going missing overnight and returns smelling of alcohol.",
    "An older man in a car has been picking her up from school with gifts.",
    "There was no food in the fridge and the children were hungry and unwashed.",
    "Mum said the girls are going back home for the summer for a special celebration.",
    "He has been watching extremist videos and talks about a coming race war.",
    "Bruising in a fingertip pattern was seen on both upper arms.",
    "Her partner checks her phone and takes her wages.",
    "She is frightened her family will take her abroad to marry a cousin.",
    "He works every day at the car wash for no pay and the boss holds his passport.",
]
MASKED = [
    "No signs of bruising were seen when changing for PE.",
    "In 2019 she went missing twice from her previous placement; none since.",
    "Staff attended FGM awareness training run by the county council.",
    "We talked through what to do if anyone offers him money to carry a parcel.",
    "Her friend's brother was groomed online last year.",
]


def make_note(rng: random.Random, words: int) -> str:
    """One note of roughly ``words`` words."""
    parts: list[str] = []
    n = 0
    while n < words:
        r = rng.random()
        s = rng.choice(CONCERN if r < 0.08 else MASKED if r < 0.16 else ROUTINE)
        parts.append(s)
        n += len(s.split())
    return " ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--notes", type=int, default=20000)
    ap.add_argument("--words", type=int, default=120, help="mean words per note")
    ap.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("-o", "--output", type=Path, required=True)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    roles = ["social worker", "school DSL", "health visitor", "youth worker", "housing officer"]
    with open(args.output, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh) if args.format == "csv" else None
        if w:
            w.writerow(["id", "case_id", "note_date", "author_role", "text"])
        for i in range(args.notes):
            words = max(40, int(rng.gauss(args.words, args.words / 3)))
            rec = {"id": f"n{i:08d}", "case_id": f"C{rng.randrange(args.notes // 5 + 1):06d}",
                   "note_date": f"20{rng.randint(19, 26)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                   "author_role": rng.choice(roles), "text": make_note(rng, words)}
            if w:
                w.writerow([rec["id"], rec["case_id"], rec["note_date"], rec["author_role"], rec["text"]])
            else:
                fh.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
