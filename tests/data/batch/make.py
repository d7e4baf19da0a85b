"""Regenerate the batch test files (committed; run only to change them).

    .venv/bin/python tests/data/batch/make.py

Synthetic notes, no real people. Each file holds some notes that the small test
lexicon (tests/conftest.py TEST_LEXICONS) flags, some it does not, and some broken rows.
"""

import datetime as dt
import gzip
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).parent

NOTES = [
    ("b-001", "C-1", "2025-01-06", "social worker", "east",
     'Jay went missing on Friday.\nHe came back with "two phones" and a wad of cash.'),
    ("b-002", "C-1", "2025-01-20", "school DSL", "east", "Attendance good, homework in, no concerns today."),
    ("b-003", "C-2", "2025-02-03", "youth worker", "west",
     "Kim talks about an older boyfriend;\r\nshe says he took her for food, then\n\nshe was taken to a hotel."),
    ("b-004", "C-3", "2025-02-10", "health visitor", "west", "Baby weighed, feeding well; mum, dad and nan present."),
    ("b-005", "C-2", "2025-03-01", "social worker", "west", "Reported missing again overnight, found by police."),
]


def write_csv(path, rows, *, delimiter=",", encoding="utf-8", bom=False, newline="\r\n"):
    def q(v):
        v = str(v)
        if any(ch in v for ch in (delimiter, '"', "\n", "\r")):
            return '"' + v.replace('"', '""') + '"'
        return v

    lines = [delimiter.join(q(v) for v in r) for r in rows]
    data = (newline.join(lines) + newline).encode(encoding)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)


HEADER = ["note_id", "case_ref", "date", "role", "team", "body"]

# 1. UTF-8 with a BOM, comma, multi-line quoted notes, and one row with a missing field.
rows = [HEADER] + [list(n) for n in NOTES[:3]] + [["b-bad", "C-9", "2025-02-04", "x"]] + [list(n) for n in NOTES[3:]]
write_csv(HERE / "notes_bom_multiline.csv", rows, bom=True)

# 2. Semicolons (sniffed), LF line ends.
write_csv(HERE / "notes_semicolon.csv", [HEADER] + [list(n) for n in NOTES], delimiter=";", newline="\n")

# 3. Windows-1252: pound sign, curly quotes, an accent.
cp = [list(n) for n in NOTES]
cp[0][5] = "Jay went missing; came back with two phones and \u00a3300 \u2018for a mate\u2019. Caf\u00e9 staff worried."
write_csv(HERE / "notes_cp1252.csv", [HEADER] + cp, encoding="cp1252")

# 4. JSONL with broken lines: bad JSON, bad UTF-8, an array, no text, a blank line.
good = [json.dumps({"id": n[0], "case_id": n[1], "note_date": n[2], "author_role": n[3], "team": n[4],
                    "text": n[5]}).encode() for n in NOTES]
lines = [good[0], b'{"id": "j-broken", "text": "unterminated', good[1], b"",
         b'{"id": "j-bytes", "text": "caf\xe9 bad byte"}', b'["an", "array"]', good[2],
         b'{"id": "j-notext", "case_id": "C-7"}', good[3], good[4]]
(HERE / "notes_broken.jsonl").write_bytes(b"\n".join(lines) + b"\n")

# 5. Parquet with a real date column and two row groups.
tbl = pa.table({
    "id": [n[0] for n in NOTES] + ["p-empty"],
    "case_id": [n[1] for n in NOTES] + ["C-8"],
    "note_date": [dt.date.fromisoformat(n[2]) for n in NOTES] + [dt.date(2025, 4, 1)],
    "author_role": [n[3] for n in NOTES] + [None],
    "team": [n[4] for n in NOTES] + ["north"],
    "text": [n[5] for n in NOTES] + [""],
})
pq.write_table(tbl, HERE / "notes.parquet", row_group_size=3)

# 6. gzip variants.
for name in ("notes_bom_multiline.csv", "notes_broken.jsonl", "notes.parquet"):
    with open(HERE / name, "rb") as src, gzip.GzipFile(HERE / (name + ".gz"), "wb", mtime=0) as dst:
        shutil.copyfileobj(src, dst)
