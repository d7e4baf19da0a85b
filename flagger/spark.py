"""The same scan on a Spark DataFrame, for exports that outgrow one machine.

    from flagger.spark import scan_dataframe
    results = scan_dataframe(spark.read.parquet("s3://bucket/notes/"), text_col="note_body")
    results.write.parquet("s3://bucket/flagger-results/")

Each row becomes one result row with the columns of :data:`flagger.batch.RESULT_COLUMNS`
(``id``, ``status``, ``categories``, ``levels``, ``max_level``, ``concerns`` and
``suppressed`` as JSON strings, ``error_code``/``error_reason``/``error_line``, the
meta columns and ``versions``): the same columns ``flagger scan -o out.parquet`` writes,
so downstream code reads either. The scan runs in ``mapInPandas``; the Flagger is
built once per executor Python process (a module-level cache in
:func:`flagger.batch.get_flagger`; Spark reuses Python workers by default), never
once per batch.

The executors need flagger installed (ship the wheel: see docs/batch.md).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Iterator

from .batch import (
    META_FIELDS,
    RESULT_COLUMNS,
    EngineConfig,
    ReadOptions,
    ScanStats,
    detect_format,
    get_flagger,
    is_gzip,
    make_sink,
    map_record,
    queue_for_review,
    record_stat,
    render,
    result_from_row,
    result_row,
    sniff_delimiter,
)
from .errors import InputFileError

log = logging.getLogger(__name__)

LINE_COL = "_flagger_line"
# With --to-review only: the note text of flagged rows (None for the rest), so the
# driver can queue them for review; dropped before anything is written.
REVIEW_TEXT_COL = "_flagger_review_text"

RESULT_DDL = (
    "id string, status string, categories array<string>, levels array<string>, max_level string, "
    "concerns string, suppressed string, error_code string, error_reason string, error_line long, "
    "case_id string, note_date string, author_role string, team string, versions string, "
    "schema_version string"
)


def _scan_batches(batches: Iterator[Any], read: ReadOptions, engine: EngineConfig,
                  line_col: str | None, review_text: bool = False) -> Iterator[Any]:
    """mapInPandas body: pandas batches of input rows -> pandas batches of result rows."""
    import pandas as pd

    flagger = get_flagger(engine)  # cached per Python worker process
    for pdf in batches:
        pdf = pdf.astype(object).where(pdf.notna(), None)
        pairs = []
        for i, raw in enumerate(pdf.to_dict("records")):
            line = raw.get(line_col) if line_col else None
            pairs.append((int(line) if line is not None else None, map_record(raw, read)))
        results = list(flagger.scan_numbered(pairs))
        out = pd.DataFrame([result_row(r) for r in results], columns=list(RESULT_COLUMNS))
        if line_col:
            out[line_col] = pdf[line_col].to_numpy()
        if review_text:
            out[REVIEW_TEXT_COL] = [rec.get("text") if res.status == "scanned" and res.concerns else None
                                    for (_, rec), res in zip(pairs, results)]
        yield out


def with_line_numbers(df, col: str = LINE_COL):
    """``df`` with a 1-based row number in input order, computed without collecting:
    per-partition counts are summed into offsets and added to the in-partition index."""
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    df = df.withColumn("_pid", F.spark_partition_id()).withColumn("_mid", F.monotonically_increasing_id())
    counts = df.groupBy("_pid").agg(F.count(F.lit(1)).alias("_n"), F.min("_mid").alias("_first"))
    w = Window.orderBy("_pid").rowsBetween(Window.unboundedPreceding, -1)
    offsets = counts.withColumn("_off", F.coalesce(F.sum("_n").over(w), F.lit(0)))
    df = df.join(F.broadcast(offsets.select("_pid", "_off", "_first")), "_pid")
    return df.withColumn(col, F.col("_off") + (F.col("_mid") - F.col("_first")) + 1).drop("_pid", "_mid", "_off",
                                                                                          "_first")


def scan_dataframe(df, *, read: ReadOptions = ReadOptions(), engine: EngineConfig = EngineConfig(),
                   line_col: str | None = None, review_text: bool = False):
    """Scan a DataFrame of notes; returns a DataFrame of result rows (see module doc).

    Args:
        df: a DataFrame with the id and text columns named in ``read`` (and optionally
            the case, date, role and team columns).
        read: column names (``id_col``, ``text_col``, ...).
        engine: model and lexicon folder for the Flagger on each executor.
        line_col: a column holding each row's line/row number, for error results and
            ordering; it is kept in the output.
        review_text: also return ``_flagger_review_text``, the note text of rows with
            concerns (None elsewhere), for queueing them for review; drop it before
            writing results anywhere.

    Raises:
        InputFileError: the id or text column is missing.
    """
    missing = [c for c in (read.id_col, read.text_col) if c not in df.columns]
    if missing:
        raise InputFileError(f"column(s) {', '.join(map(repr, missing))} not found; columns are: "
                             f"{', '.join(map(repr, df.columns[:20]))}")
    keep = [c for c in dict.fromkeys([read.id_col, read.text_col, *read.meta_cols().values()]) if c in df.columns]
    if line_col:
        keep.append(line_col)
    ddl = RESULT_DDL + (f", {line_col} long" if line_col else "") + (f", {REVIEW_TEXT_COL} string" if review_text else "")

    def fn(batches):
        return _scan_batches(batches, read, engine, line_col, review_text)

    return df.select(*keep).mapInPandas(fn, schema=ddl)


def get_session(master: str = "local[*]", app_name: str = "flagger-scan"):
    """A SparkSession for local runs (UI off, Arrow batches sized for notes)."""
    import os
    import sys

    from pyspark.sql import SparkSession

    # Executors must run this same interpreter, where flagger is installed.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    spark = (SparkSession.builder.master(master).appName(app_name)
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .config("spark.sql.execution.arrow.maxRecordsPerBatch", "500")
             .config("spark.sql.shuffle.partitions", "8")
             .config("spark.driver.memory", os.environ.get("FLAGGER_SPARK_DRIVER_MEMORY", "2g"))
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def read_export(spark, path: Path, read: ReadOptions):
    """Read a CSV, JSONL or Parquet export (CSV/JSONL may be gzipped) as a DataFrame."""
    kind = detect_format(path, read.fmt)
    p = str(path)
    if kind == "parquet":
        if is_gzip(path):
            raise InputFileError(f"{path.name}: gzipped Parquet is not supported with --engine spark; gunzip it")
        return spark.read.parquet(p)
    if kind == "jsonl":
        return spark.read.option("mode", "PERMISSIVE").json(p)
    delim = read.delimiter or sniff_delimiter(path, read.encoding)
    return (spark.read.option("header", True).option("multiLine", True).option("escape", '"')
            .option("sep", "\t" if delim == "\\t" else delim).option("encoding", read.encoding)
            .option("mode", "PERMISSIVE").csv(p))


def scan_file(input_path: Path, output: Path | None, *, out_fmt: str = "jsonl", read: ReadOptions = ReadOptions(),
              engine: EngineConfig = EngineConfig(), master: str = "local[*]", quiet: bool = False,
              to_review: str | None = None) -> ScanStats:
    """``flagger scan --engine spark``: scan an export with Spark and write the results.

    Parquet output is written by Spark as a directory of part files (the way to go on a
    cluster); JSONL/CSV output is streamed back to the driver in input order through
    the same writers as the local engine. Error results carry the 1-based record
    number as their line (Spark does not see physical lines). With ``to_review`` (a
    review store URL) the driver also queues every flagged note for review, as the
    local engine does (idempotent: a rescan adds no duplicates).

    Returns the run's statistics.
    """
    if not Path(input_path).is_file() and not Path(input_path).is_dir():
        raise InputFileError(f"{input_path}: file not found")
    t0 = time.monotonic()
    if output is not None:
        Path(output).parent.mkdir(parents=True, exist_ok=True)  # as the local engine does
    store = None
    if to_review:
        from .store import ReviewStore

        store = ReviewStore(to_review)  # opened (and migrated) before the scan: fail early
    spark = get_session(master)
    df = with_line_numbers(read_export(spark, Path(input_path), read))
    res = scan_dataframe(df, read=read, engine=engine, line_col=LINE_COL, review_text=store is not None)
    stats = ScanStats()
    cols = ["status", "categories", "levels", "error_code", "error_reason", "error_line", *META_FIELDS]

    if out_fmt == "parquet":
        if store is not None:
            # Scanned once: the write and the queueing read the same persisted results.
            from pyspark import StorageLevel

            res = res.persist(StorageLevel.MEMORY_AND_DISK)
        res.orderBy(LINE_COL).drop(LINE_COL, REVIEW_TEXT_COL).write.mode("overwrite").parquet(str(output))
        rows = spark.read.parquet(str(output)).select(*cols).toLocalIterator()
        for r in rows:
            stats.add(_stat_from_row(r.asDict()))
        if store is not None:
            for r in res.where(res[REVIEW_TEXT_COL].isNotNull()).orderBy(LINE_COL).drop(LINE_COL).toLocalIterator():
                row = r.asDict()
                text = row.pop(REVIEW_TEXT_COL)
                queue_for_review(store, result_from_row(row), text)
            res.unpersist()
    else:
        sink = make_sink(out_fmt, output)
        batch: list[Any] = []
        for r in res.orderBy(LINE_COL).drop(LINE_COL).toLocalIterator():
            row = r.asDict()
            text = row.pop(REVIEW_TEXT_COL, None)
            result = result_from_row(row)
            if store is not None and text is not None:
                queue_for_review(store, result, text)
            batch.append(render(result, out_fmt))
            stats.add(record_stat(result, 0))
            if len(batch) >= 500:
                sink.write(batch)
                batch = []
        sink.write(batch)
        sink.commit()
        sink.finish()
    stats.seconds = time.monotonic() - t0
    return stats


def _stat_from_row(r: dict[str, Any]) -> tuple:
    from .batch import _month

    err = (r["error_code"], r["error_reason"], r["error_line"]) if r.get("error_code") else None
    concerns = tuple(zip(r.get("categories") or [], r.get("levels") or []))
    return (r["status"], concerns, err, _month(r.get("note_date")), r.get("team"), r.get("author_role"), 0, None)
