"""Batch scanning of note exports: read any export, scan in parallel, write results,
resume after a crash, and account for every input record exactly once.

The pieces, each usable on its own:

* **Readers** (:func:`read_records`) stream CSV (any delimiter, quoted multi-line
  fields, a BOM, UTF-8 or Windows-1252), JSONL and Parquet, each optionally gzipped.
  Every input record yields exactly one ``(line, record)`` pair; a record that cannot
  be parsed yields ``{"_error": reason}`` so the scan writes an error result for it
  rather than dropping it. Memory stays flat: CSV and JSONL are read line by line,
  Parquet batch by batch.
* **Sinks** (:class:`JsonlSink`, :class:`CsvSink`, :class:`ParquetSink`) write results
  in input order and *commit* them: data is appended and fsynced, then a small
  checkpoint file records the committed byte offset (or Parquet parts) and the number
  of input records behind it. A half-written line past the committed offset is cut
  off on resume, so it can never be mistaken for a result.
* :func:`run_scan` ties them together with a process pool (the Flagger built once per
  worker), bounded in-flight chunks (so memory stays flat), progress on stderr, the
  review queue (``--to-review``) and the checkpoint (``--resume``).

Nothing here prints note text: progress lines, summaries, errors and the HTML report
(unless ``include_text``) hold ids, counts, line numbers and reasons only.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import html
import io
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Mapping

from .errors import FlaggerError, InputFileError

log = logging.getLogger(__name__)

Record = dict[str, Any]

INPUT_FORMATS = ("jsonl", "csv", "parquet")
OUTPUT_FORMATS = ("jsonl", "csv", "parquet")
META_FIELDS = ("case_id", "note_date", "author_role", "team")
CHECKPOINT_VERSION = 1
# CSV notes can be long; the csv module's default limit (128 KiB) would turn them into
# row errors. The engine refuses notes over max_note_chars with a clear reason anyway.
csv.field_size_limit(64 * 1024 * 1024)


class ResumeError(FlaggerError):
    """``--resume`` cannot carry on: the input or the options changed, or no checkpoint."""

    code = "E203"


# ----------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReadOptions:
    """How to read an export. Column names map the export's columns onto the record
    fields the engine needs (``id``, ``text``) and the meta fields carried through
    (``case_id``, ``note_date``, ``author_role``, ``team``; only when present)."""

    fmt: str | None = None
    id_col: str = "id"
    text_col: str = "text"
    case_col: str = "case_id"
    date_col: str = "note_date"
    role_col: str = "author_role"
    team_col: str = "team"
    encoding: str = "utf-8"
    delimiter: str | None = None

    def meta_cols(self) -> dict[str, str]:
        return {"case_id": self.case_col, "note_date": self.date_col,
                "author_role": self.role_col, "team": self.team_col}


def detect_format(path: Path, fmt: str | None = None) -> str:
    """'jsonl', 'csv' or 'parquet', from ``fmt`` or the file name (``.gz`` allowed).

    Raises:
        InputFileError: when the name says nothing and no format is given.
    """
    if fmt:
        if fmt not in INPUT_FORMATS:
            raise InputFileError(f"unknown input format {fmt!r}; use one of {', '.join(INPUT_FORMATS)}")
        return fmt
    name = Path(path).name.lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith((".csv", ".tsv", ".txt")):
        return "csv"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    raise InputFileError(f"{Path(path).name}: cannot tell the format from the name; use --format jsonl|csv|parquet")


def is_gzip(path: Path) -> bool:
    """True when the file starts with the gzip magic bytes (whatever its name)."""
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _open_binary(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")


def _clean(value: Any) -> Any:
    """Meta values as JSON-friendly scalars: dates as ISO strings, NaN/None dropped."""
    if value is None:
        return None
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, (str, int, bool)):
        return value
    iso = getattr(value, "isoformat", None)
    return iso() if callable(iso) else str(value)


def map_record(raw: Mapping[str, Any], opts: ReadOptions) -> Record:
    """An export row -> the record the engine scans (``id``, ``text`` and meta)."""
    rec: Record = {"id": raw.get(opts.id_col), "text": raw.get(opts.text_col)}
    if rec["id"] is not None and not isinstance(rec["id"], str):
        rec["id"] = str(_clean(rec["id"]))
    for key, col in opts.meta_cols().items():
        v = _clean(raw.get(col))
        if v is not None and v != "":
            rec[key] = v
    return rec


def _skip_raw(records: Iterator[Any], skip: int) -> None:
    for _ in range(skip):
        if next(records, None) is None:
            return


def read_jsonl(path: Path, opts: ReadOptions = ReadOptions(), *, skip: int = 0) -> Iterator[tuple[int, Record]]:
    """One record per non-blank line. Undecodable bytes and broken JSON become error
    records. ``skip`` records are passed over without parsing (resume)."""
    with _open_binary(path) as fh:
        lines = ((n, raw) for n, raw in enumerate(fh, start=1) if raw.strip())
        _skip_raw(lines, skip)
        for lineno, raw in lines:
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                yield lineno, {"_error": f"line is not valid UTF-8 (byte {exc.start})"}
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                yield lineno, {"_error": f"line is not valid JSON ({exc.msg} at column {exc.colno})"}
                continue
            if not isinstance(obj, dict):
                yield lineno, {"_error": f"line is a JSON {type(obj).__name__}, not an object"}
                continue
            yield lineno, map_record(obj, opts)


def _text_stream(path: Path, encoding: str) -> IO[str]:
    # surrogateescape: a bad byte becomes a lone surrogate in that row only, so the row
    # is reported as an error and the rest of the file still reads.
    enc = codecs.lookup(encoding).name
    if enc == "utf-8":
        enc = "utf-8-sig"
    return io.TextIOWrapper(_open_binary(path), encoding=enc, errors="surrogateescape", newline="")


def sniff_delimiter(path: Path, encoding: str) -> str:
    """The CSV delimiter from the first 64 KiB (one of , ; tab |); ',' when unsure."""
    with _text_stream(path, encoding) as fh:
        sample = fh.read(65536)
    # Only complete lines: a cut-off quoted field confuses the sniffer.
    if len(sample) == 65536 and "\n" in sample:
        sample = sample[: sample.rfind("\n")]
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        first = sample.split("\n", 1)[0]
        counts = {d: first.count(d) for d in ",;\t|"}
        best = max(counts, key=counts.get)
        return best if counts[best] else ","


def _bad_bytes(values: list[str]) -> bool:
    return any(any("\udc80" <= ch <= "\udcff" for ch in v) for v in values if v)


def read_csv(path: Path, opts: ReadOptions = ReadOptions(), *, skip: int = 0) -> Iterator[tuple[int, Record]]:
    """CSV rows as records, streamed. The line given for a row is the physical line it
    starts on (quoted fields may span lines). Rows with the wrong number of fields or
    bytes not valid in the encoding become error records.

    Raises:
        InputFileError: no header, or the id/text columns are missing.
    """
    try:
        codecs.lookup(opts.encoding)
    except LookupError:
        raise InputFileError(f"unknown encoding {opts.encoding!r}") from None
    delimiter = opts.delimiter or sniff_delimiter(path, opts.encoding)
    if delimiter == "\\t":
        delimiter = "\t"
    with _text_stream(path, opts.encoding) as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            raise InputFileError(f"{path.name}: empty file, no header row") from None
        except csv.Error as exc:
            raise InputFileError(f"{path.name}: header row cannot be parsed ({exc})") from None
        header = [h.lstrip("\ufeff").strip() for h in header]
        missing = [c for c in (opts.id_col, opts.text_col) if c not in header]
        if missing:
            shown = ", ".join(repr(h[:40]) for h in header[:20])
            raise InputFileError(
                f"{path.name}: column(s) {', '.join(map(repr, missing))} not found "
                f"(delimiter {delimiter!r}); columns are: {shown}. Use --id-col/--text-col or --delimiter"
            )
        width = len(header)
        n = 0
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                n += 1
                if n > skip:
                    yield start, {"_error": f"row cannot be parsed ({exc})"}
                continue
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line: not a record
            n += 1
            if n <= skip:
                continue
            if len(row) != width:
                yield start, {"_error": f"row has {len(row)} fields, the header has {width}"}
                continue
            if _bad_bytes(row):
                yield start, {"_error": f"row has bytes that are not valid {opts.encoding}; try --encoding cp1252"}
                continue
            yield start, map_record(dict(zip(header, row)), opts)


def read_parquet(path: Path, opts: ReadOptions = ReadOptions(), *, skip: int = 0,
                 batch_size: int = 2048) -> Iterator[tuple[int, Record]]:
    """Parquet rows as records, batch by batch (row groups are never loaded whole).
    The line given is the 1-based row number. A gzipped Parquet file is first
    decompressed to a temporary file (Parquet needs to seek).

    Raises:
        InputFileError: not a Parquet file, or the id/text columns are missing.
    """
    import pyarrow.parquet as pq

    tmp = None
    try:
        src = path
        if is_gzip(path):
            tmp = tempfile.NamedTemporaryFile(prefix="flagger-", suffix=".parquet", delete=False)
            with gzip.open(path, "rb") as zf:
                shutil.copyfileobj(zf, tmp, 1 << 20)
            tmp.close()
            src = Path(tmp.name)
        try:
            pf = pq.ParquetFile(src)
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError...
            raise InputFileError(f"{path.name}: not a readable Parquet file ({type(exc).__name__})") from None
        names = pf.schema_arrow.names
        missing = [c for c in (opts.id_col, opts.text_col) if c not in names]
        if missing:
            raise InputFileError(f"{path.name}: column(s) {', '.join(map(repr, missing))} not found; "
                                 f"columns are: {', '.join(map(repr, names[:20]))}")
        cols = [c for c in dict.fromkeys([opts.id_col, opts.text_col, *opts.meta_cols().values()]) if c in names]
        row = 0
        for batch in pf.iter_batches(batch_size=batch_size, columns=cols):
            if row + batch.num_rows <= skip:
                row += batch.num_rows
                continue
            for raw in batch.to_pylist():
                row += 1
                if row <= skip:
                    continue
                yield row, map_record(raw, opts)
    finally:
        if tmp is not None:
            os.unlink(tmp.name)


def read_records(path: Path, opts: ReadOptions = ReadOptions(), *, skip: int = 0) -> Iterator[tuple[int, Record]]:
    """Stream ``(line, record)`` pairs from any supported export, after ``skip`` records.

    Raises:
        InputFileError: the file is missing, of unknown format, or lacks the columns.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: file not found")
    kind = detect_format(path, opts.fmt)
    reader = {"jsonl": read_jsonl, "csv": read_csv, "parquet": read_parquet}[kind]
    return reader(path, opts, skip=skip)


def count_records(path: Path, opts: ReadOptions, *, max_bytes: int = 2 << 30) -> int | None:
    """The number of records when cheap to know (Parquet metadata; a line count of an
    uncompressed JSONL file under ``max_bytes``), else None."""
    path = Path(path)
    try:
        kind = detect_format(path, opts.fmt)
        if kind == "parquet" and not is_gzip(path):
            import pyarrow.parquet as pq

            return pq.ParquetFile(path).metadata.num_rows
        if kind == "jsonl" and not is_gzip(path) and path.stat().st_size <= max_bytes:
            n = 0
            with open(path, "rb") as fh:
                for line in fh:
                    if line.strip():
                        n += 1
            return n
    except Exception:  # only a hint for the progress bar
        return None
    return None


def input_fingerprint(path: Path) -> dict[str, Any]:
    """Size, mtime and SHA-256 of the first MiB: enough to notice a changed export."""
    st = Path(path).stat()
    with open(path, "rb") as fh:
        head = hashlib.sha256(fh.read(1 << 20)).hexdigest()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "head_sha256": head}


# ----------------------------------------------------------------------------------
# Results as rows
# ----------------------------------------------------------------------------------
RESULT_COLUMNS = ("id", "status", "categories", "levels", "max_level", "concerns", "suppressed", "error_code",
                  "error_reason", "error_line", "case_id", "note_date", "author_role", "team",
                  "versions", "schema_version")
CSV_COLUMNS = ("id", "status", "case_id", "note_date", "author_role", "team", "category", "level", "score",
               "evidence", "evidence_offsets", "indicators", "why", "error_code", "error_reason", "error_line")
_LEVEL_RANK = {"low": 1, "medium": 2, "high": 3}


def _meta_str(meta: Mapping[str, Any], key: str) -> str | None:
    v = meta.get(key)
    return None if v is None else str(v)


def result_row(result) -> dict[str, Any]:
    """A NoteResult as one flat row (Parquet output and Spark): concerns and suppressed
    evidence as JSON strings, meta fields as columns."""
    meta = result.meta or {}
    levels = [c.level for c in result.concerns]
    return {
        "id": result.id,
        "status": result.status,
        "categories": [c.category for c in result.concerns],
        "levels": levels,
        "max_level": max(levels, key=_LEVEL_RANK.get) if levels else None,
        "concerns": json.dumps([c.model_dump(mode="json") for c in result.concerns], ensure_ascii=False),
        "suppressed": json.dumps([e.model_dump(mode="json") for e in result.suppressed], ensure_ascii=False),
        "error_code": result.error.code if result.error else None,
        "error_reason": result.error.reason if result.error else None,
        "error_line": result.error.line if result.error else None,
        **{k: _meta_str(meta, k) for k in META_FIELDS},
        "versions": result.versions.model_dump_json() if result.versions else None,
        "schema_version": result.schema_version,
    }


def result_from_row(row: Mapping[str, Any]):
    """The inverse of :func:`result_row`: a NoteResult from a flat row."""
    from .schema import NoteResult

    data: dict[str, Any] = {
        "schema_version": row.get("schema_version") or "1.0",
        "id": row["id"],
        "status": row["status"],
        "concerns": json.loads(row.get("concerns") or "[]"),
        "suppressed": json.loads(row.get("suppressed") or "[]"),
        "versions": json.loads(row["versions"]) if row.get("versions") else None,
        "meta": {k: row[k] for k in META_FIELDS if row.get(k) is not None},
    }
    if row.get("error_code"):
        line = row.get("error_line")
        data["error"] = {"code": row["error_code"], "reason": row.get("error_reason") or "",
                         "line": None if line is None or line != line else int(line)}
    return NoteResult.model_validate(data)


def csv_rows(result) -> list[list[Any]]:
    """One CSV row per concern; a note without concerns, or in error, gets one row."""
    meta = result.meta or {}
    base = [result.id, result.status, *(_meta_str(meta, k) or "" for k in META_FIELDS)]
    if result.status == "error":
        e = result.error
        return [base + ["", "", "", "", "", "", "", e.code, e.reason, "" if e.line is None else e.line]]
    if not result.concerns:
        return [base + [""] * 10]
    rows = []
    for c in result.concerns:
        rows.append(base + [
            c.category, c.level, f"{c.score:.4f}",
            " | ".join(e.text for e in c.evidence),
            ";".join(f"{e.start}-{e.end}" for e in c.evidence),
            " ".join(dict.fromkeys(e.indicator for e in c.evidence)),
            c.why, "", "", "",
        ])
    return rows


def _parquet_schema():
    import pyarrow as pa

    s = pa.string()
    return pa.schema([
        ("id", s), ("status", s), ("categories", pa.list_(s)), ("levels", pa.list_(s)), ("max_level", s), ("concerns", s),
        ("suppressed", s), ("error_code", s), ("error_reason", s), ("error_line", pa.int64()),
        ("case_id", s), ("note_date", s), ("author_role", s), ("team", s), ("versions", s),
        ("schema_version", s),
    ])


# ----------------------------------------------------------------------------------
# Sinks: append, commit, truncate on resume
# ----------------------------------------------------------------------------------
def output_format(path: Path | None, fmt: str | None = None) -> str:
    """The output format from ``fmt`` or the output file's suffix; JSONL by default."""
    if fmt:
        return fmt
    if path is None:
        return "jsonl"
    name = Path(path).name.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".csv", ".tsv")):
        return "csv"
    return "jsonl"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON to ``path`` so a reader sees the old or the new file, never half."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class _AppendSink:
    """Appends encoded payloads to a file (or stdout) and commits by byte offset."""

    fmt = "jsonl"

    def __init__(self, path: Path | None, *, resume_state: Mapping[str, Any] | None = None):
        self.path = path
        if path is None:
            self.fh = sys.stdout.buffer
            self.offset = 0
            self._begin()
            return
        if resume_state is not None:
            self.fh = open(path, "r+b")
            # Anything past the committed offset is a chunk that was being written
            # when the run died: cut it off so it is written once, on this run.
            self.fh.truncate(resume_state["offset"])
            self.fh.seek(resume_state["offset"])
            self.offset = resume_state["offset"]
        else:
            self.fh = open(path, "wb")
            self.offset = 0
            self._begin()

    def _begin(self) -> None:
        pass

    def _encode(self, payloads: list[Any]) -> bytes:
        return "".join(p + "\n" for p in payloads).encode("utf-8")

    def write(self, payloads: list[Any]) -> None:
        data = self._encode(payloads)
        self.fh.write(data)
        self.offset += len(data)

    def commit(self) -> dict[str, Any]:
        """Make everything written so far durable; returns the state to checkpoint."""
        self.fh.flush()
        if self.path is not None:
            os.fsync(self.fh.fileno())
        return {"offset": self.offset}

    def finish(self) -> None:
        self.fh.flush()
        if self.path is not None:
            os.fsync(self.fh.fileno())
            self.fh.close()

    def cleanup(self) -> None:
        pass

    def abort(self) -> None:
        try:
            self.fh.flush()
        except (OSError, ValueError):
            pass
        if self.path is not None:
            self.fh.close()


class JsonlSink(_AppendSink):
    """One NoteResult JSON per line (payloads are ``model_dump_json()`` strings)."""

    fmt = "jsonl"


class CsvSink(_AppendSink):
    """One row per concern (payloads are lists of rows from :func:`csv_rows`)."""

    fmt = "csv"

    def _begin(self) -> None:
        self.write([[list(CSV_COLUMNS)]])

    def _encode(self, payloads: list[Any]) -> bytes:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\r\n")
        for rows in payloads:
            w.writerows(rows)
        return buf.getvalue().encode("utf-8")


class ParquetSink:
    """Parquet output written as committed parts (``OUT.parts/part-NNNNN.parquet``),
    merged into ``OUT`` at the end. A part is renamed into place only once complete,
    so a crash leaves at most an uncommitted part, which resume deletes."""

    fmt = "parquet"

    def __init__(self, path: Path, *, resume_state: Mapping[str, Any] | None = None, part_rows: int = 20000):
        if path is None:
            raise InputFileError("Parquet output needs -o FILE (it cannot go to stdout)")
        self.path = path
        self.parts_dir = path.with_name(path.name + ".parts")
        self.part_rows = part_rows
        self.rows: list[dict[str, Any]] = []
        if resume_state is not None:
            self.parts = list(resume_state.get("parts", []))
            keep = set(self.parts)
            self.parts_dir.mkdir(parents=True, exist_ok=True)
            for p in self.parts_dir.iterdir():
                if p.name not in keep:
                    p.unlink()
        else:
            if self.parts_dir.exists():
                shutil.rmtree(self.parts_dir)
            self.parts_dir.mkdir(parents=True)
            self.parts = []

    def write(self, payloads: list[Any]) -> None:
        self.rows.extend(payloads)

    def wants_commit(self) -> bool:
        return len(self.rows) >= self.part_rows

    def commit(self) -> dict[str, Any]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.rows:
            name = f"part-{len(self.parts):05d}.parquet"
            tmp = self.parts_dir / (name + ".tmp")
            pq.write_table(pa.Table.from_pylist(self.rows, schema=_parquet_schema()), tmp)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, self.parts_dir / name)
            _fsync_dir(self.parts_dir)
            self.parts.append(name)
            self.rows = []
        return {"parts": list(self.parts)}

    def finish(self) -> None:
        """Merge the parts into the output file, one part in memory at a time."""
        import pyarrow.parquet as pq

        self.commit()
        tmp = self.path.with_name(self.path.name + ".tmp")
        with pq.ParquetWriter(tmp, _parquet_schema()) as writer:
            for name in self.parts:
                pf = pq.ParquetFile(self.parts_dir / name)
                for i in range(pf.num_row_groups):
                    writer.write_table(pf.read_row_group(i))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)

    def cleanup(self) -> None:
        """Remove the parts once the checkpoint says the run is done (not before: a
        crash during the merge must leave the parts for --resume to merge again)."""
        shutil.rmtree(self.parts_dir, ignore_errors=True)

    def abort(self) -> None:
        self.rows = []


def make_sink(fmt: str, path: Path | None, *, resume_state: Mapping[str, Any] | None = None):
    if fmt == "parquet":
        rows = int(os.environ.get("FLAGGER_PARQUET_PART_ROWS", "20000"))
        return ParquetSink(path, resume_state=resume_state, part_rows=rows)
    if fmt == "csv":
        return CsvSink(path, resume_state=resume_state)
    return JsonlSink(path, resume_state=resume_state)


def render(result, fmt: str) -> Any:
    """A result as the payload its sink writes."""
    if fmt == "parquet":
        return result_row(result)
    if fmt == "csv":
        return csv_rows(result)
    return result.model_dump_json()


# ----------------------------------------------------------------------------------
# Statistics, summary, report
# ----------------------------------------------------------------------------------
def _month(date: Any) -> str | None:
    s = str(date or "")[:7]
    return s if len(s) == 7 and s[4] == "-" and s[:4].isdigit() and s[5:].isdigit() else None


def record_stat(result, words: int, *, include_text: bool = False) -> tuple:
    """What the summary and report need from one result: no note text unless asked."""
    meta = result.meta or {}
    sample = None
    if include_text and result.concerns:
        sample = (result.id, [(c.category, c.level, [e.text for e in c.evidence]) for c in result.concerns])
    err = (result.error.code, result.error.reason, result.error.line) if result.error else None
    return (result.status, tuple((c.category, c.level) for c in result.concerns), err,
            _month(meta.get("note_date")), _meta_str(meta, "team"), _meta_str(meta, "author_role"), words, sample)


@dataclass
class ScanStats:
    """Counts over a whole run (kept in the checkpoint so a resumed run reports all)."""

    records: int = 0
    scanned: int = 0
    errors: int = 0
    flagged: int = 0
    words: int = 0
    by_category: dict[str, int] = field(default_factory=dict)
    by_level: dict[str, int] = field(default_factory=dict)
    by_category_level: dict[str, int] = field(default_factory=dict)
    by_month: dict[str, list[int]] = field(default_factory=dict)  # month -> [notes, flagged]
    by_team: dict[str, list[int]] = field(default_factory=dict)
    by_role: dict[str, list[int]] = field(default_factory=dict)
    error_codes: dict[str, int] = field(default_factory=dict)
    error_examples: list[list[Any]] = field(default_factory=list)  # [line, id-less reason]
    samples: list[Any] = field(default_factory=list)
    seconds: float = 0.0

    MAX_EXAMPLES = 20
    MAX_SAMPLES = 200

    def add(self, stat: tuple) -> None:
        status, concerns, err, month, team, role, words, sample = stat
        self.records += 1
        self.words += words
        flagged = int(bool(concerns))
        if status == "scanned":
            self.scanned += 1
        else:
            self.errors += 1
            code, reason, line = err
            self.error_codes[code] = self.error_codes.get(code, 0) + 1
            if len(self.error_examples) < self.MAX_EXAMPLES:
                self.error_examples.append([line, reason])
        self.flagged += flagged
        for cat, level in concerns:
            self.by_category[cat] = self.by_category.get(cat, 0) + 1
            self.by_level[level] = self.by_level.get(level, 0) + 1
            key = f"{cat}/{level}"
            self.by_category_level[key] = self.by_category_level.get(key, 0) + 1
        for table, key in ((self.by_month, month), (self.by_team, team), (self.by_role, role)):
            if key is not None:
                row = table.setdefault(key, [0, 0])
                row[0] += 1
                row[1] += flagged
        if sample is not None and len(self.samples) < self.MAX_SAMPLES:
            self.samples.append(sample)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ScanStats":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    def summary(self) -> str:
        """A few lines for stderr: counts only, never note text."""
        rate = self.records / self.seconds if self.seconds else 0.0
        wrate = self.words / self.seconds if self.seconds else 0.0
        lines = [
            f"{self.records:,} records in {self.seconds:.1f}s ({rate:,.0f} notes/s, {wrate:,.0f} words/s): "
            f"{self.scanned:,} scanned, {self.flagged:,} flagged, {self.errors:,} in error.",
        ]
        if self.by_category:
            parts = []
            for cat, n in sorted(self.by_category.items(), key=lambda kv: -kv[1]):
                lv = ", ".join(f"{lvl} {self.by_category_level.get(f'{cat}/{lvl}', 0)}"
                               for lvl in ("high", "medium", "low") if self.by_category_level.get(f"{cat}/{lvl}"))
                parts.append(f"  {cat}: {n:,} ({lv})")
            lines.append("Concerns suggested by category (for DSL review):")
            lines.extend(parts)
            lines.append("By level: " + ", ".join(f"{lvl} {self.by_level.get(lvl, 0):,}"
                                                   for lvl in ("high", "medium", "low")))
        else:
            lines.append("No concerns suggested.")
        if self.errors:
            lines.append("Records in error (line: reason), first %d:" % len(self.error_examples))
            lines.extend(f"  line {line}: {reason}" for line, reason in self.error_examples)
        return "\n".join(lines)


def _svg_bars(title: str, items: list[tuple[str, float]], *, colour: str = "#3b6ea5", second=None) -> str:
    """A horizontal bar chart as inline SVG (no scripts, no external resources)."""
    if not items:
        return f"<h2>{html.escape(title)}</h2><p>None.</p>"
    bar_h, gap, label_w, width = 18, 6, 170, 460
    top = max(v for _, v in items) or 1
    h = len(items) * (bar_h + gap) + 10
    out = [f'<h2>{html.escape(title)}</h2>',
           f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + width + 90}" height="{h}" role="img" '
           f'aria-label="{html.escape(title)}">']
    for i, (label, v) in enumerate(items):
        y = i * (bar_h + gap) + 5
        w = max(1, int(width * v / top)) if v else 0
        out.append(f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end" font-size="12">{html.escape(label)}</text>')
        out.append(f'<rect x="{label_w}" y="{y}" width="{w}" height="{bar_h}" fill="{colour}"/>')
        if second is not None:
            w2 = max(1, int(width * second[i] / top)) if second[i] else 0
            out.append(f'<rect x="{label_w}" y="{y + bar_h // 3}" width="{w2}" height="{bar_h // 3}" fill="#c0392b"/>')
        txt = f"{int(v):,}" + (f" ({int(second[i]):,} flagged)" if second is not None else "")
        out.append(f'<text x="{label_w + w + 6}" y="{y + 13}" font-size="12">{txt}</text>')
    out.append("</svg>")
    return "\n".join(out)


def render_report(stats: ScanStats, *, title: str = "flagger batch scan", include_text: bool = False,
                  source: str | None = None) -> str:
    """A self-contained HTML page (inline SVG, no scripts, no CDN) with the run's counts.

    No note text appears unless ``include_text`` (then the evidence words of up to
    200 flagged notes are listed).
    """
    e = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{e(title)}</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:60em;color:#222}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
        ".notice{background:#fff6d6;padding:.6em 1em;border-left:4px solid #e0b000}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        "<p class='notice'>Every concern counted here is a <b>suggestion</b> awaiting review by a "
        "Designated Safeguarding Lead. flagger does not refer, confirm or contact anyone.</p>",
        "<table>",
        *(f"<tr><th>{e(k)}</th><td>{v}</td></tr>" for k, v in [
            ("Input", e(source or "")), ("Records", f"{stats.records:,}"), ("Scanned", f"{stats.scanned:,}"),
            ("Flagged (at least one suggested concern)", f"{stats.flagged:,}"),
            ("In error", f"{stats.errors:,}"), ("Words", f"{stats.words:,}"),
            ("Scan time", f"{stats.seconds:.1f}s")]),
        "</table>",
    ]
    cats = sorted(stats.by_category.items(), key=lambda kv: -kv[1])
    parts.append(_svg_bars("Suggested concerns by category", [(k, v) for k, v in cats]))
    parts.append(_svg_bars("Suggested concerns by level",
                           [(lvl, stats.by_level.get(lvl, 0)) for lvl in ("high", "medium", "low")],
                           colour="#8e6c8a"))
    for label, table in (("Notes by month (red: flagged)", stats.by_month),
                         ("Notes by team (red: flagged)", stats.by_team),
                         ("Notes by author role (red: flagged)", stats.by_role)):
        if table:
            keys = sorted(table) if table is stats.by_month else sorted(table, key=lambda k: -table[k][0])[:40]
            parts.append(_svg_bars(label, [(k, table[k][0]) for k in keys], colour="#7a9cc6",
                                   second=[table[k][1] for k in keys]))
    if stats.errors:
        parts.append("<h2>Records in error</h2><table><tr><th>code</th><th>count</th></tr>")
        parts.extend(f"<tr><td>{e(k)}</td><td>{v:,}</td></tr>" for k, v in sorted(stats.error_codes.items()))
        parts.append("</table><table><tr><th>line</th><th>reason</th></tr>")
        parts.extend(f"<tr><td>{line}</td><td>{e(str(reason))}</td></tr>" for line, reason in stats.error_examples)
        parts.append("</table>")
    if include_text and stats.samples:
        parts.append("<h2>Flagged notes (evidence words, first %d)</h2><table>" % len(stats.samples))
        parts.append("<tr><th>note id</th><th>category</th><th>level</th><th>evidence</th></tr>")
        for nid, concerns in stats.samples:
            for cat, level, texts in concerns:
                parts.append(f"<tr><td>{e(str(nid))}</td><td>{e(cat)}</td><td>{e(level)}</td>"
                             f"<td>{e(' | '.join(texts))}</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


# ----------------------------------------------------------------------------------
# Progress
# ----------------------------------------------------------------------------------
def _fmt_secs(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Progress:
    """Notes/s and ETA on stderr: a redrawn line on a terminal, a log line every
    ``interval`` seconds otherwise. Counts only, never text."""

    def __init__(self, total: int | None, *, quiet: bool = False, stream: IO[str] | None = None,
                 interval: float | None = None, done: int = 0):
        self.stream = stream or sys.stderr
        self.total, self.quiet, self.done, self.start_done = total, quiet, done, done
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval if interval is not None else (
            0.2 if self.tty else float(os.environ.get("FLAGGER_PROGRESS_SECONDS", "30")))
        self.t0 = self.last = time.monotonic()

    def line(self) -> str:
        el = time.monotonic() - self.t0
        rate = (self.done - self.start_done) / el if el > 0 else 0.0
        if self.total:
            pct = 100.0 * self.done / self.total if self.total else 100.0
            eta = _fmt_secs((self.total - self.done) / rate) if rate > 0 else "?"
            return f"scanned {self.done:,}/{self.total:,} notes ({pct:.1f}%), {rate:,.0f} notes/s, ETA {eta}"
        return f"scanned {self.done:,} notes, {rate:,.0f} notes/s, {_fmt_secs(el)} elapsed"

    def update(self, n: int) -> None:
        self.done += n
        if self.quiet:
            return
        now = time.monotonic()
        if now - self.last < self.interval:
            return
        self.last = now
        if self.tty:
            self.stream.write("\r\033[K" + self.line())
        else:
            self.stream.write("flagger: " + self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        if not self.quiet and self.tty:
            self.stream.write("\r\033[K" + self.line() + "\n")
            self.stream.flush()


# ----------------------------------------------------------------------------------
# Workers
# ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class EngineConfig:
    """What a worker needs to build its Flagger (picklable, for spawn-based pools)."""

    model: str | None = None
    lexicon_dir: str | None = None


_FLAGGERS: dict[EngineConfig, Any] = {}


def get_flagger(config: EngineConfig = EngineConfig()):
    """The Flagger for ``config``, built once per process and cached.

    Raises:
        LexiconError, ModelError: as :class:`flagger.engine.Flagger`.
    """
    fl = _FLAGGERS.get(config)
    if fl is None:
        from .engine import Flagger

        fl = Flagger(model=config.model, lexicon_dir=config.lexicon_dir)
        _FLAGGERS[config] = fl
    return fl


_WORKER: dict[str, Any] = {}


def _init_worker(config: EngineConfig, out_fmt: str, include_text: bool, want_review: bool) -> None:
    # With the fork start method the parent's Flagger is inherited (copy-on-write), so
    # get_flagger finds it cached; with spawn it is built here, once per worker.
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    _WORKER.update(flagger=get_flagger(config), fmt=out_fmt, include_text=include_text, review=want_review)


def _init_pool_worker(*args: Any) -> None:
    # Ctrl-C reaches the whole process group; only the parent handles it (it stops the
    # pool and keeps what was committed), so workers do not print tracebacks.
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _init_worker(*args)


def _test_delay() -> None:
    # For the kill/resume tests only: makes a scan slow enough to be killed part-way.
    d = os.environ.get("FLAGGER_TEST_CHUNK_DELAY")
    if d:
        time.sleep(float(d))


def scan_chunk(chunk: list[tuple[int, Record]]) -> list[tuple[Any, tuple, str | None]]:
    """Scan one chunk in a worker. Returns, per record in order: the sink payload, the
    stat tuple and (for --to-review, flagged notes only) the result JSON."""
    _test_delay()
    fl, fmt, inc, review = _WORKER["flagger"], _WORKER["fmt"], _WORKER["include_text"], _WORKER["review"]
    try:
        results = list(fl.scan_numbered(chunk))
    except Exception as exc:  # a bug must not lose the chunk: fall back record by record
        log.error("chunk scan failed (%s); scanning its records one by one", type(exc).__name__)
        results = [_scan_one_safely(fl, line, rec) for line, rec in chunk]
    out = []
    for (line, rec), res in zip(chunk, results):
        text = rec.get("text")
        words = len(text.split()) if isinstance(text, str) and res.status == "scanned" else 0
        out.append((render(res, fmt), record_stat(res, words, include_text=inc),
                    res.model_dump_json() if review and res.concerns else None))
    return out


def _scan_one_safely(fl, line, rec):
    from .schema import ErrorInfo, NoteResult

    try:
        return next(fl.scan_numbered([(line, rec)]))
    except Exception as exc:
        rid = rec.get("id")
        return NoteResult(id=str(rid) if rid not in (None, "") else f"<line {line}>", status="error",
                          error=ErrorInfo(code="E299", reason=f"internal error scanning this record "
                                          f"({type(exc).__name__})", line=line), versions=fl.versions)


# ----------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------
@dataclass
class ScanJob:
    """Everything one ``flagger scan`` run needs."""

    input_path: Path
    output: Path | None = None
    read: ReadOptions = field(default_factory=ReadOptions)
    out_fmt: str = "jsonl"
    engine: EngineConfig = field(default_factory=EngineConfig)
    workers: int = 1
    chunk_size: int = 100
    resume: bool = False
    to_review: str | None = None
    include_text: bool = False
    quiet: bool = False
    commit_seconds: float = 1.0

    def checkpoint_path(self) -> Path | None:
        return None if self.output is None else self.output.with_name(self.output.name + ".checkpoint.json")

    def options_key(self) -> dict[str, Any]:
        """The options that change what is written; a resume must use the same."""
        return {"read": asdict(self.read), "out_fmt": self.out_fmt, "engine": asdict(self.engine),
                "input": str(Path(self.input_path).resolve())}


class _Chunker:
    def __init__(self, source: Iterator[tuple[int, Record]], size: int):
        self.source, self.size = source, size

    def __iter__(self):
        chunk: list[tuple[int, Record]] = []
        for pair in self.source:
            chunk.append(pair)
            if len(chunk) >= self.size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


def _load_checkpoint(job: ScanJob, versions: dict[str, Any]) -> dict[str, Any]:
    cp_path = job.checkpoint_path()
    if cp_path is None:
        raise ResumeError("--resume needs -o FILE: results on stdout cannot be resumed")
    if not cp_path.exists():
        raise ResumeError(f"{cp_path.name}: no checkpoint to resume from; run without --resume")
    try:
        cp = json.loads(cp_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise ResumeError(f"{cp_path.name}: checkpoint cannot be read; run without --resume") from None
    if cp.get("version") != CHECKPOINT_VERSION:
        raise ResumeError(f"{cp_path.name}: checkpoint from another flagger version; run without --resume")
    if cp.get("input") != input_fingerprint(job.input_path):
        raise ResumeError(f"{job.input_path.name}: the input changed since the interrupted run "
                          "(size, time or first MiB); run without --resume to start again")
    if cp.get("options") != json.loads(json.dumps(job.options_key())):
        raise ResumeError("the options differ from the interrupted run's (columns, formats, model, lexicons); "
                          "resume with the same options or run without --resume")
    if cp.get("versions") != versions:
        raise ResumeError("the lexicons, context rules or model changed since the interrupted run; "
                          "run without --resume so every result comes from the same versions")
    if job.out_fmt != "parquet" and job.output.exists() and job.output.stat().st_size < cp["sink"]["offset"]:
        raise ResumeError(f"{job.output.name}: shorter than its checkpoint says; run without --resume")
    if job.out_fmt != "parquet" and not job.output.exists() and not cp.get("done"):
        raise ResumeError(f"{job.output.name}: output missing; run without --resume")
    return cp


def queue_for_review(store, result, text: str) -> None:
    """Put one flagged note's suggestions in the review queue, as a batch scan does
    (both engines): idempotent per note id and text hash, team from the note's meta."""
    store.enqueue(result, text, source="batch", team=result.meta.get("team"))


def _review_store(url: str):
    from .store import ReviewStore

    return ReviewStore(url)


def run_scan(job: ScanJob, *, progress_stream: IO[str] | None = None,
             on_flagger: Callable[[Any], None] | None = None) -> ScanStats:
    """Scan ``job.input_path`` into ``job.output`` (or stdout), exactly once per record.

    Returns the run's statistics (the whole run's, when resumed).

    Raises:
        InputFileError: the input cannot be read at all.
        ResumeError: ``--resume`` refused (changed input or options, no checkpoint).
        LexiconError, ModelError: the Flagger cannot be built.
    """
    from .schema import NoteResult

    src = Path(job.input_path)
    if not src.is_file():
        raise InputFileError(f"{src}: file not found")
    detect_format(src, job.read.fmt)  # fail early, before building the Flagger
    fingerprint = input_fingerprint(src)
    cp_path = job.checkpoint_path()
    if job.resume and cp_path is not None and not cp_path.exists():
        raise ResumeError(f"{cp_path.name}: no checkpoint to resume from; run without --resume")
    if job.resume and cp_path is None:
        raise ResumeError("--resume needs -o FILE: results on stdout cannot be resumed")

    flagger = get_flagger(job.engine)
    if on_flagger:
        on_flagger(flagger)
    versions = flagger.versions.model_dump(mode="json")

    done_records = 0
    stats = ScanStats()
    sink_state = None
    if job.resume:
        cp = _load_checkpoint(job, versions)
        stats = ScanStats.from_dict(cp["stats"])
        if cp.get("done"):
            log.info("the run had already finished; nothing to do")
            if job.out_fmt != "parquet" and job.output.stat().st_size > cp["sink"]["offset"]:
                with open(job.output, "r+b") as fh:  # bytes written after the final commit
                    fh.truncate(cp["sink"]["offset"])
            return stats
        done_records, sink_state = cp["records"], cp["sink"]
    elif cp_path is not None and cp_path.exists():
        log.warning("%s: an unfinished run's checkpoint was found; starting over (use --resume to continue)",
                    cp_path.name)

    total = count_records(src, job.read)
    source = read_records(src, job.read, skip=done_records)
    first = next(source, None)  # surfaces header/column errors before any output is touched
    if first is not None:
        source = _prepend(first, source)
    if job.output is not None:
        job.output.parent.mkdir(parents=True, exist_ok=True)
    sink = make_sink(job.out_fmt, job.output, resume_state=sink_state)
    store = _review_store(job.to_review) if job.to_review else None
    progress = Progress(total, quiet=job.quiet, stream=progress_stream, done=done_records)
    seconds_before = stats.seconds
    t0 = time.monotonic()
    last_commit = t0

    last_state: dict[str, Any] = {}

    def checkpoint(done: bool = False) -> None:
        if not done:
            last_state.clear()
            last_state.update(sink.commit())
        if cp_path is None:
            return
        state = dict(last_state)
        stats.seconds = seconds_before + (time.monotonic() - t0)
        atomic_write_json(cp_path, {
            "version": CHECKPOINT_VERSION, "input": fingerprint, "options": job.options_key(),
            "versions": versions, "records": done_records, "sink": state, "stats": stats.to_dict(),
            "done": done,
        })

    if cp_path is not None and not job.resume:
        checkpoint()  # the header (CSV) and a zero-record checkpoint: resumable from the start

    def handle(chunk: list[tuple[int, Record]], out: list[tuple[Any, tuple, str | None]]) -> None:
        nonlocal done_records, last_commit
        sink.write([payload for payload, _, _ in out])
        for _, stat, _ in out:
            stats.add(stat)
        if store is not None:
            for (line, rec), (_, _, rjson) in zip(chunk, out):
                if rjson is not None:
                    queue_for_review(store, NoteResult.model_validate_json(rjson), rec["text"])
        done_records += len(out)
        progress.update(len(out))
        now = time.monotonic()
        wants = sink.wants_commit() if isinstance(sink, ParquetSink) else now - last_commit >= job.commit_seconds
        if wants:
            checkpoint()
            last_commit = now

    chunks = _Chunker(source, job.chunk_size)
    try:
        if job.workers <= 1:
            _init_worker(job.engine, job.out_fmt, job.include_text, store is not None)
            for chunk in chunks:
                handle(chunk, scan_chunk(chunk))
        else:
            _run_pool(job, chunks, handle)
        checkpoint()  # everything durable before the final merge/close
        sink.finish()
        checkpoint(done=True)
        sink.cleanup()
    except BaseException:
        sink.abort()
        progress.close()
        raise
    progress.close()
    stats.seconds = seconds_before + (time.monotonic() - t0)
    return stats


def _prepend(first, rest):
    yield first
    yield from rest


def _run_pool(job: ScanJob, chunks, handle) -> None:
    """Scan chunks on ``job.workers`` processes; results handled in input order with at
    most ``3 * workers`` chunks in flight, so memory stays flat whatever the input size."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    methods = mp.get_all_start_methods()
    ctx = mp.get_context("fork" if "fork" in methods else "spawn")
    max_inflight = 3 * job.workers
    pending: deque = deque()
    with ProcessPoolExecutor(max_workers=job.workers, mp_context=ctx, initializer=_init_pool_worker,
                             initargs=(job.engine, job.out_fmt, job.include_text, bool(job.to_review))) as pool:
        try:
            for chunk in chunks:
                pending.append((chunk, pool.submit(scan_chunk, chunk)))
                while len(pending) >= max_inflight:
                    c, fut = pending.popleft()
                    handle(c, fut.result())
            while pending:
                c, fut = pending.popleft()
                handle(c, fut.result())
        except BrokenProcessPool:
            raise InputFileError("a worker process died (out of memory or killed); the results so far are "
                                 "committed: rerun with --resume to carry on") from None
        except BaseException:
            for _, fut in pending:
                fut.cancel()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
