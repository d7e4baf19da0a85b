"""Read note exports record by record, never losing one.

Every input record yields exactly one ``(line, record)`` pair; a record that cannot be
parsed yields a record with an ``_error`` reason instead, so the scan writes an error
result for it rather than dropping it.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Iterator

from .errors import InputFileError

Record = dict[str, Any]


def detect_format(path: Path, fmt: str | None = None) -> str:
    """'jsonl' or 'csv', from ``fmt`` or the file name."""
    if fmt:
        return fmt
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith((".csv", ".tsv", ".txt")):
        return "csv"
    raise InputFileError(f"{path.name}: cannot tell the format from the name; use --format jsonl|csv")


def read_jsonl(path: Path) -> Iterator[tuple[int, Record]]:
    """One record per line. Undecodable bytes and broken JSON become error records."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
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
            yield lineno, obj


def read_csv(path: Path, *, id_col: str, text_col: str, encoding: str = "utf-8-sig",
             delimiter: str | None = None) -> Iterator[tuple[int, Record]]:
    """CSV rows as records with ``id`` and ``text`` from the named columns."""
    with open(path, "rb") as fh:
        data = fh.read()
    try:
        content = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{path.name}: not valid {encoding} (byte {exc.start}); try --encoding cp1252") from None
    sample = content[:8192]
    if delimiter is None:
        try:
            delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
        except csv.Error:
            delimiter = ","
    reader = csv.DictReader(io.StringIO(content, newline=""), delimiter=delimiter)
    if reader.fieldnames is None or id_col not in reader.fieldnames or text_col not in reader.fieldnames:
        raise InputFileError(
            f"{path.name}: columns {id_col!r} and {text_col!r} are needed; found {reader.fieldnames}"
        )
    row_no = 0
    while True:
        row_no += 1
        line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield line, {"_error": f"row {row_no} cannot be parsed ({exc})"}
            continue
        rec: Record = {k: v for k, v in row.items() if k not in (id_col, text_col) and k is not None}
        rec["id"] = row.get(id_col)
        rec["text"] = row.get(text_col)
        yield line, rec
