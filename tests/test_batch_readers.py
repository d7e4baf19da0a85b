"""Readers: every input record comes out exactly once, as a record or an error record."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from flagger.batch import ReadOptions, count_records, detect_format, read_records, sniff_delimiter
from flagger.errors import InputFileError

DATA = Path(__file__).parent / "data" / "batch"
CSV_COLS = dict(id_col="note_id", text_col="body", case_col="case_ref", date_col="date", role_col="role")
GOOD = ["b-001", "b-002", "b-003", "b-004", "b-005"]


def _read(name, skip=0, **opts):
    return list(read_records(DATA / name, ReadOptions(**opts), skip=skip))


@pytest.mark.parametrize("name,opts,ids,errors", [
    ("notes_bom_multiline.csv", CSV_COLS, GOOD[:3] + [None] + GOOD[3:], {9: "row has 4 fields, the header has 6"}),
    ("notes_bom_multiline.csv.gz", CSV_COLS, GOOD[:3] + [None] + GOOD[3:], {9: "row has 4 fields"}),
    ("notes_semicolon.csv", CSV_COLS, GOOD, {}),
    ("notes_cp1252.csv", {**CSV_COLS, "encoding": "cp1252"}, GOOD, {}),
    ("notes_cp1252.csv", CSV_COLS, [None] + GOOD[1:], {2: "not valid utf-8; try --encoding cp1252"}),
    ("notes_broken.jsonl", {}, ["b-001", None, "b-002", None, None, "b-003", "j-notext", "b-004", "b-005"],
     {2: "not valid JSON", 5: "not valid UTF-8", 6: "JSON list, not an object"}),
    ("notes_broken.jsonl.gz", {}, ["b-001", None, "b-002", None, None, "b-003", "j-notext", "b-004", "b-005"],
     {2: "not valid JSON", 5: "not valid UTF-8", 6: "JSON list"}),
    ("notes.parquet", {}, GOOD + ["p-empty"], {}),
    ("notes.parquet.gz", {}, GOOD + ["p-empty"], {}),
])
def test_batch_readers_every_record_once(name, opts, ids, errors):
    got = _read(name, **opts)
    assert [rec.get("id") for _, rec in got] == ids
    got_errors = {line: rec["_error"] for line, rec in got if "_error" in rec}
    assert set(got_errors) == set(errors)
    for line, reason in errors.items():
        assert reason in got_errors[line]


@pytest.mark.parametrize("name,opts,idx,expected", [
    # multi-line quoted note with doubled quotes, CR LF inside, BOM stripped from the header
    ("notes_bom_multiline.csv", CSV_COLS, 0,
     {"id": "b-001", "text": 'Jay went missing on Friday.\nHe came back with "two phones" and a wad of cash.',
      "case_id": "C-1", "note_date": "2025-01-06", "author_role": "social worker", "team": "east"}),
    ("notes_cp1252.csv", {**CSV_COLS, "encoding": "cp1252"}, 0,
     {"id": "b-001", "text": "Jay went missing; came back with two phones and \u00a3300 \u2018for a mate\u2019. "
      "Caf\u00e9 staff worried.", "case_id": "C-1", "note_date": "2025-01-06", "author_role": "social worker",
      "team": "east"}),
    ("notes.parquet", {}, 1, {"id": "b-002", "text": "Attendance good, homework in, no concerns today.",
                              "case_id": "C-1", "note_date": "2025-01-20", "author_role": "school DSL",
                              "team": "east"}),
    ("notes.parquet", {}, 5, {"id": "p-empty", "text": "", "case_id": "C-8", "note_date": "2025-04-01",
                              "team": "north"}),
])
def test_batch_readers_fields_and_meta(name, opts, idx, expected):
    assert _read(name, **opts)[idx][1] == expected


@pytest.mark.parametrize("name,opts,lines", [
    ("notes_bom_multiline.csv", CSV_COLS, [2, 4, 5, 9, 10, 11]),  # physical line each row starts on
    ("notes.parquet", {}, [1, 2, 3, 4, 5, 6]),
    ("notes_broken.jsonl", {}, [1, 2, 3, 5, 6, 7, 8, 9, 10]),
])
def test_batch_readers_line_numbers(name, opts, lines):
    assert [line for line, _ in _read(name, **opts)] == lines


@pytest.mark.parametrize("name,opts", [
    ("notes_bom_multiline.csv", CSV_COLS), ("notes_broken.jsonl", {}), ("notes.parquet", {}),
    ("notes.parquet.gz", {}), ("notes_broken.jsonl.gz", {}),
])
@pytest.mark.parametrize("skip", [0, 1, 3, 4, 100])
def test_batch_readers_skip_is_a_suffix(name, opts, skip):
    full = _read(name, **opts)
    assert _read(name, skip=skip, **opts) == full[skip:]


@pytest.mark.parametrize("name,opts,message", [
    ("notes_bom_multiline.csv", {}, r"column\(s\) 'id', 'text' not found"),
    ("notes.parquet", {"text_col": "body"}, r"column\(s\) 'body' not found"),
    ("missing.csv", {}, "file not found"),
    ("notes_bom_multiline.csv", {**CSV_COLS, "encoding": "klingon"}, "unknown encoding"),
])
def test_batch_readers_refuse_unreadable(name, opts, message):
    with pytest.raises(InputFileError, match=message):
        _read(name, **opts)


@pytest.mark.parametrize("name,fmt", [("a.csv", "csv"), ("a.CSV.gz", "csv"), ("a.tsv", "csv"), ("a.jsonl.gz", "jsonl"),
                                      ("a.ndjson", "jsonl"), ("a.parquet", "parquet"), ("a.parquet.gz", "parquet")])
def test_batch_detect_format(name, fmt):
    assert detect_format(Path(name)) == fmt


@pytest.mark.parametrize("name,expected", [("notes_semicolon.csv", ";"), ("notes_bom_multiline.csv", ",")])
def test_batch_sniff_delimiter(name, expected):
    assert sniff_delimiter(DATA / name, "utf-8") == expected


@pytest.mark.parametrize("name,expected", [("notes_broken.jsonl", 9), ("notes.parquet", 6),
                                           ("notes_bom_multiline.csv", None), ("notes_broken.jsonl.gz", None)])
def test_batch_count_records(name, expected):
    assert count_records(DATA / name, ReadOptions()) == expected


def test_batch_readers_stream_large_csv(tmp_path):
    """The CSV reader is lazy: the first record comes before the file is read through."""
    p = tmp_path / "big.csv.gz"
    with gzip.open(p, "wt", encoding="utf-8", newline="") as fh:
        fh.write("id,text\n")
        for i in range(50_000):
            fh.write(f'n{i},"line one\nline two {i}"\n')
    it = read_records(p, ReadOptions())
    line, rec = next(it)
    assert (line, rec["id"]) == (2, "n0")
    assert sum(1 for _ in it) == 49_999
