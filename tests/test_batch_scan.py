"""`flagger scan`: every input record out exactly once, in every output format, with the
right exit code; resume refusals; report privacy; --to-review idempotency."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from flagger.cli import main

DATA = Path(__file__).parent / "data" / "batch"
CSV_OPTS = ["--id-col", "note_id", "--text-col", "body", "--case-col", "case_ref", "--date-col", "date",
            "--role-col", "role"]


@pytest.fixture
def scan(test_lexicon_dir):
    def run(*args):
        r = CliRunner().invoke(main, ["scan", "--model", "none", "--lexicon-dir", str(test_lexicon_dir), *map(str, args)])
        if r.exception and not isinstance(r.exception, SystemExit):
            raise r.exception
        return r
    return run


def _read_out(path: Path, fmt: str) -> list[dict]:
    """Results as dicts (one per input record), whatever the output format."""
    if fmt == "jsonl":
        return [json.loads(l) for l in path.read_text(encoding="utf-8").splitlines()]
    if fmt == "parquet":
        return pq.read_table(path).to_pylist()
    rows = list(csv.DictReader(path.open(encoding="utf-8", newline="")))
    seen, out = set(), []
    for r in rows:  # one row per concern: fold back to one per note
        if r["id"] not in seen:
            seen.add(r["id"])
            out.append(r)
    return out


FILES = [
    # name, extra options, ids out in order, statuses, exit code
    ("notes_bom_multiline.csv", CSV_OPTS, ["b-001", "b-002", "b-003", "<line 9>", "b-004", "b-005"],
     "sssess", 3),
    ("notes_cp1252.csv", CSV_OPTS + ["--encoding", "cp1252"], ["b-001", "b-002", "b-003", "b-004", "b-005"],
     "sssss", 0),
    ("notes_broken.jsonl.gz", [], ["b-001", "<line 2>", "b-002", "<line 5>", "<line 6>", "b-003", "j-notext",
                                   "b-004", "b-005"], "seseesess", 3),
    ("notes.parquet", [], ["b-001", "b-002", "b-003", "b-004", "b-005", "p-empty"], "ssssse", 3),
    ("notes.parquet.gz", [], ["b-001", "b-002", "b-003", "b-004", "b-005", "p-empty"], "ssssse", 3),
]


@pytest.mark.parametrize("name,opts,ids,statuses,code", FILES)
@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_batch_scan_every_record_once(scan, tmp_path, name, opts, ids, statuses, code, fmt, workers):
    out = tmp_path / f"out.{fmt}"
    r = scan(DATA / name, "-o", out, "-w", workers, "--chunk-size", "2", *opts)
    assert r.exit_code == code, r.output
    got = _read_out(out, fmt)
    assert [g["id"] for g in got] == ids
    assert [g["status"] for g in got] == ["scanned" if s == "s" else "error" for s in statuses[: len(ids)]]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_batch_scan_same_results_in_every_format(scan, tmp_path, fmt):
    scan(DATA / "notes.parquet", "-o", tmp_path / "ref.jsonl", "-w", "1")
    ref = {d["id"]: sorted(c["category"] for c in d["concerns"]) for d in _read_out(tmp_path / "ref.jsonl", "jsonl")}
    out = tmp_path / f"o.{fmt}"
    scan(DATA / "notes.parquet", "-o", out, "-w", "2", "--chunk-size", "1")
    if fmt == "csv":
        rows = list(csv.DictReader(out.open(encoding="utf-8", newline="")))
        got: dict = {}
        for r in rows:
            got.setdefault(r["id"], [])
            if r["category"]:
                got[r["id"]].append(r["category"])
        got = {k: sorted(v) for k, v in got.items()}
    elif fmt == "parquet":
        got = {d["id"]: sorted(d["categories"]) for d in _read_out(out, fmt)}
    else:
        got = {d["id"]: sorted(c["category"] for c in d["concerns"]) for d in _read_out(out, fmt)}
    assert got == ref
    assert ref["b-001"] == ["county_lines", "missing"] and ref["b-003"] == ["cse"]


def test_batch_scan_csv_rows_carry_evidence_and_offsets(scan, tmp_path):
    out = tmp_path / "o.csv"
    scan(DATA / "notes_bom_multiline.csv", "-o", out, *CSV_OPTS)
    rows = list(csv.DictReader(out.open(encoding="utf-8", newline="")))
    text = 'Jay went missing on Friday.\nHe came back with "two phones" and a wad of cash.'
    cl = next(r for r in rows if r["id"] == "b-001" and r["category"] == "county_lines")
    assert cl["evidence"] == "two phones | wad of cash"
    for span, words in zip(cl["evidence_offsets"].split(";"), cl["evidence"].split(" | ")):
        s, e = map(int, span.split("-"))
        assert text[s:e] == words
    err = next(r for r in rows if r["status"] == "error")
    assert (err["error_line"], err["error_code"]) == ("9", "E202")
    assert [r["id"] for r in rows if r["id"] == "b-002"] == ["b-002"]  # no concerns: still one row


def test_batch_scan_meta_carried(scan, tmp_path):
    out = tmp_path / "o.jsonl"
    scan(DATA / "notes_bom_multiline.csv", "-o", out, *CSV_OPTS)
    first = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    assert first["meta"] == {"case_id": "C-1", "note_date": "2025-01-06", "author_role": "social worker",
                             "team": "east"}


def test_batch_scan_stdout_is_only_data(scan):
    r = scan(DATA / "notes_semicolon.csv", *CSV_OPTS, "-w", "1")
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    assert [json.loads(l)["id"] for l in lines] == ["b-001", "b-002", "b-003", "b-004", "b-005"]
    assert "5 records" in r.stderr


@pytest.mark.parametrize("args,code,message", [
    (["nope.jsonl"], 1, "file not found"),
    ([DATA / "notes_bom_multiline.csv"], 1, "not found"),  # id/text columns missing
    ([DATA / "notes.parquet", "--resume"], 2, "--resume needs -o"),
    ([DATA / "notes.parquet", "--output-format", "parquet"], 2, "Parquet output needs -o"),
    ([DATA / "notes.parquet", "-w", "0"], 2, "0"),
    ([DATA / "notes.parquet", "--include-text"], 2, "--include-text only applies"),
    ([DATA / "notes_broken.jsonl", "--format", "xml"], 2, "xml"),
])
def test_batch_scan_exit_codes(scan, args, code, message):
    r = scan(*args)
    assert r.exit_code == code
    assert message in r.output


def test_batch_scan_all_records_bad_is_failure(scan, tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_bytes(b"{not json\n[1]\n")
    r = scan(p, "-o", tmp_path / "o.jsonl")
    assert r.exit_code == 1
    assert len((tmp_path / "o.jsonl").read_text().splitlines()) == 2


def test_batch_scan_report_has_counts_but_no_text(scan, tmp_path):
    rep = tmp_path / "r.html"
    r = scan(DATA / "notes_bom_multiline.csv", "-o", tmp_path / "o.jsonl", "--report", rep, *CSV_OPTS)
    page = rep.read_text(encoding="utf-8")
    assert "<svg" in page and "county_lines" in page and "2025-02" in page and "east" in page
    assert "social worker" in page
    for words in ("two phones", "wad of cash", "older boyfriend", "Jay", "Kim"):
        assert words not in page
        assert words not in r.stderr
    assert "http" not in page.replace("http://www.w3.org/2000/svg", "")  # no CDN, nothing fetched
    scan(DATA / "notes_bom_multiline.csv", "-o", tmp_path / "o2.jsonl", "--report", rep, "--include-text", *CSV_OPTS)
    assert "two phones" in rep.read_text(encoding="utf-8")


def test_batch_scan_to_review_is_idempotent(scan, tmp_path):
    from sqlalchemy import func, select

    from flagger.store import Note, ReviewStore, Suggestion

    url = f"sqlite:///{tmp_path / 'review.db'}"
    for _ in range(2):
        r = scan(DATA / "notes_bom_multiline.csv", "-o", tmp_path / "o.jsonl", "--to-review", url, *CSV_OPTS, "-w", "2")
        assert r.exit_code == 3
    st = ReviewStore(url)
    with st.session() as s:
        notes = s.scalars(select(Note)).all()
        assert sorted(n.note_key for n in notes) == ["b-001", "b-003", "b-005"]
        assert {n.note_key: n.team for n in notes}["b-001"] == "east"
        assert all(n.source == "batch" for n in notes)
        assert s.scalar(select(func.count()).select_from(Suggestion)) == 4  # b-001: 2, b-003: 1, b-005: 1
    st.engine.dispose()


def _interrupted_run(scan, out: Path, monkeypatch, *, keep_records: int):
    """A run stopped after ``keep_records`` committed records (chunks of 1, a commit per
    chunk), with a torn half-written record left after the committed offset."""
    import flagger.batch as fb

    monkeypatch.setenv("FLAGGER_COMMIT_SECONDS", "0")
    real, calls = fb.scan_chunk, {"n": 0}

    def dying(chunk):
        calls["n"] += 1
        if calls["n"] > keep_records:
            raise KeyboardInterrupt
        return real(chunk)

    monkeypatch.setattr(fb, "scan_chunk", dying)
    r = scan(DATA / "notes_broken.jsonl", "-o", out, "--chunk-size", "1", "-w", "1")
    assert r.exit_code == (130 if keep_records < 9 else 3)
    monkeypatch.setattr(fb, "scan_chunk", real)
    with out.open("ab") as fh:
        fh.write(b'{"schema_version":"1.0","id":"b-0')  # what a power cut mid-write leaves
    return r


@pytest.mark.parametrize("keep", [0, 1, 4, 9])
def test_batch_scan_resume_exactly_once(scan, tmp_path, monkeypatch, keep):
    ref = tmp_path / "ref.jsonl"
    scan(DATA / "notes_broken.jsonl", "-o", ref, "-w", "1")
    out = tmp_path / "o.jsonl"
    _interrupted_run(scan, out, monkeypatch, keep_records=keep)
    r = scan(DATA / "notes_broken.jsonl", "-o", out, "--resume", "-w", "2")
    assert r.exit_code == 3, r.output
    assert out.read_bytes() == ref.read_bytes()
    assert "9 records" in r.stderr  # the summary covers the whole run, not just the rest


def test_batch_scan_resume_refused_when_input_changed(scan, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes((DATA / "notes_broken.jsonl").read_bytes())
    out = tmp_path / "o.jsonl"
    scan(src, "-o", out)
    with src.open("ab") as fh:
        fh.write(b'{"id": "new", "text": "added later"}\n')
    r = scan(src, "-o", out, "--resume")
    assert r.exit_code == 2 and "input changed" in r.output


@pytest.mark.parametrize("extra,message", [(["--output-format", "csv"], "options differ"),
                                           (["--id-col", "note"], "options differ")])
def test_batch_scan_resume_refused_when_options_differ(scan, tmp_path, extra, message):
    out = tmp_path / "o.jsonl"
    scan(DATA / "notes_broken.jsonl", "-o", out)
    r = scan(DATA / "notes_broken.jsonl", "-o", out, "--resume", *extra)
    assert r.exit_code == 2 and message in r.output


def test_batch_scan_resume_without_checkpoint_is_misuse(scan, tmp_path):
    r = scan(DATA / "notes_broken.jsonl", "-o", tmp_path / "o.jsonl", "--resume")
    assert r.exit_code == 2 and "no checkpoint" in r.output


def test_batch_scan_resume_parquet_parts(scan, tmp_path, monkeypatch):
    """Parquet output: parts committed before the kill are kept, a torn part is dropped."""
    import flagger.batch as fb

    monkeypatch.setenv("FLAGGER_PARQUET_PART_ROWS", "2")
    ref = tmp_path / "ref.parquet"
    scan(DATA / "notes.parquet", "-o", ref)
    out = tmp_path / "o.parquet"
    calls = {"n": 0}
    real = fb.ParquetSink.commit

    def dying_commit(self):
        calls["n"] += 1
        if calls["n"] == 3:  # after two committed parts
            (self.parts_dir / "part-00002.parquet.tmp").write_bytes(b"PAR1 torn")
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(fb.ParquetSink, "commit", dying_commit)
    r = scan(DATA / "notes.parquet", "-o", out, "-w", "1", "--chunk-size", "1")
    assert r.exit_code == 130
    monkeypatch.setattr(fb.ParquetSink, "commit", real)
    r = scan(DATA / "notes.parquet", "-o", out, "--resume")
    assert r.exit_code == 3, r.output
    assert pq.read_table(out).to_pylist() == pq.read_table(ref).to_pylist()
    assert not out.with_name(out.name + ".parts").exists()


@pytest.mark.parametrize("name", ["results.jsonl", "results.parquet"])
def test_batch_scan_output_folder_refused_for_local_engine(scan, tmp_path, name):
    (tmp_path / name).mkdir()
    r = scan(DATA / "notes.parquet", "-o", tmp_path / name)
    assert r.exit_code == 2 and "is a folder" in r.output
