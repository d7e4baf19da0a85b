"""``flagger scan``: batch scanning of exported notes (issue #5).

The command only parses options, maps typed errors to exit codes and prints the
summary; the work is in :mod:`flagger.batch` (and :mod:`flagger.spark` for
``--engine spark``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from ..errors import FlaggerError

EXIT_OK, EXIT_FAILURE, EXIT_MISUSE, EXIT_PARTIAL = 0, 1, 2, 3

SCAN_HELP = """Scan the notes in IN and write one result per input record, in input order.

IN is a CSV (any delimiter; quoted multi-line fields; UTF-8 with or without a BOM, or
--encoding cp1252), JSONL or Parquet export, optionally gzipped (.csv.gz, .jsonl.gz,
.parquet.gz). Results go to stdout as JSONL, or to -o FILE as JSONL, CSV (one row per
suggested concern with the evidence words and offsets; a note without concerns or in
error still gets a row) or Parquet, from --output-format or the file's suffix.

Every input record is accounted for: a row that cannot be read (bad JSON, bad bytes,
wrong number of fields) becomes an error result with its line number and reason, and
the run goes on. With -o, a run that is interrupted (Ctrl-C, kill, power loss) carries
on from its last checkpoint with --resume and still ends with exactly one result per
record. Progress goes to stderr (notes/s, ETA); a summary follows. Note text never
appears in progress, summaries, errors or the --report page (unless --include-text).

\b
Exit codes:
  0  every record scanned
  3  partial success: some records are error results (see the summary)
  1  failure: the input cannot be read, every record failed, or the run stopped
  2  misuse: bad options, or --resume refused (input or options changed)

Every concern is a suggestion for a Designated Safeguarding Lead to review.
"""


def _workers_default() -> int:
    return os.cpu_count() or 1


@click.command("scan", help=SCAN_HELP)
@click.argument("input_path", metavar="IN", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Write results here (default: stdout, JSONL). Needed for --resume.")
@click.option("--output-format", type=click.Choice(["jsonl", "csv", "parquet"]), default=None,
              help="Output format (default: from the -o suffix, else jsonl).")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv", "parquet"]), default=None,
              help="Input format (default: from the file name).")
@click.option("--id-col", default="id", show_default=True, help="Column (or JSON key) with the note id.")
@click.option("--text-col", default="text", show_default=True, help="Column with the note text.")
@click.option("--case-col", default="case_id", show_default=True, help="Column with the case id (optional).")
@click.option("--date-col", default="note_date", show_default=True, help="Column with the note date (optional).")
@click.option("--role-col", default="author_role", show_default=True, help="Column with the author role (optional).")
@click.option("--team-col", default="team", show_default=True, help="Column with the team (optional).")
@click.option("--encoding", default="utf-8", show_default=True,
              help="CSV text encoding, e.g. cp1252 for Windows exports (a UTF-8 BOM is always accepted).")
@click.option("--delimiter", default=None, help="CSV delimiter (default: sniffed from , ; tab |).")
@click.option("--model", type=click.Choice(["tfidf", "minilm", "none"]), default=None,
              help="Classifier to fuse with the lexicons (default: settings, tfidf).")
@click.option("--lexicon-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Lexicon folder (default: the bundled lexicons).")
@click.option("-w", "--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes (default: the number of CPUs). The Flagger is built once per worker.")
@click.option("--chunk-size", type=click.IntRange(min=1, max=100_000), default=100, show_default=True,
              help="Records per chunk sent to a worker.")
@click.option("--resume", is_flag=True,
              help="Carry on an interrupted run from its checkpoint (needs the same IN, -o and options).")
@click.option("--to-review", "to_review", metavar="DB_URL", default=None,
              help="Also queue suggestions for DSL review, e.g. sqlite:///out/review.db (idempotent).")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a self-contained HTML report of the counts (no note text).")
@click.option("--include-text", is_flag=True, help="Let the --report page show evidence words of flagged notes.")
@click.option("--engine", type=click.Choice(["local", "spark"]), default="local", show_default=True,
              help="'spark' runs the scan with PySpark (local[N] unless --spark-master).")
@click.option("--spark-master", default=None, help="Spark master for --engine spark (default: local[WORKERS]).")
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary on stderr.")
def scan_cmd(input_path: Path, output: Path | None, output_format: str | None, fmt: str | None, id_col: str,
             text_col: str, case_col: str, date_col: str, role_col: str, team_col: str, encoding: str,
             delimiter: str | None, model: str | None, lexicon_dir: Path | None, workers: int | None,
             chunk_size: int, resume: bool, to_review: str | None, report: Path | None, include_text: bool,
             engine: str, spark_master: str | None, quiet: bool) -> None:
    from .. import batch as b

    workers = workers or _workers_default()
    out_fmt = b.output_format(output, output_format)
    if out_fmt == "parquet" and output is None:
        raise click.UsageError("Parquet output needs -o FILE")
    if resume and output is None:
        raise click.UsageError("--resume needs -o FILE (results on stdout cannot be resumed)")
    if include_text and report is None:
        raise click.UsageError("--include-text only applies to --report")
    if output is not None and output.resolve() == input_path.resolve():
        raise click.UsageError("-o must not be the input file")
    # Spark writes Parquet as a folder of part files (rewritten on a rerun); every other
    # output is one file.
    if output is not None and output.is_dir() and not (engine == "spark" and out_fmt == "parquet"):
        raise click.UsageError(f"-o {output.name}: is a folder; give a file name")
    read = b.ReadOptions(fmt=fmt, id_col=id_col, text_col=text_col, case_col=case_col, date_col=date_col,
                         role_col=role_col, team_col=team_col, encoding=encoding, delimiter=delimiter)
    eng = b.EngineConfig(model=model, lexicon_dir=str(lexicon_dir.resolve()) if lexicon_dir else None)

    if engine == "spark":
        if resume:
            raise click.UsageError("--resume is for --engine local; Spark retries failed tasks itself")
        stats = _run_spark(input_path, output, out_fmt, read, eng, workers, spark_master, quiet, to_review)
    else:
        job = b.ScanJob(input_path=input_path, output=output, read=read, out_fmt=out_fmt, engine=eng,
                        workers=workers, chunk_size=chunk_size, resume=resume, to_review=to_review,
                        include_text=include_text, quiet=quiet,
                        commit_seconds=float(os.environ.get("FLAGGER_COMMIT_SECONDS", "1")))
        try:
            stats = b.run_scan(job)
        except b.ResumeError as exc:
            click.echo(f"Error: {exc.message}", err=True)
            sys.exit(EXIT_MISUSE)
        except KeyboardInterrupt:
            click.echo("\nInterrupted. Results up to the last checkpoint are kept"
                       + ("; rerun with --resume to carry on." if output else "."), err=True)
            sys.exit(130)
        except FlaggerError as exc:
            raise click.ClickException(exc.message) from None

    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(b.render_report(stats, include_text=include_text, source=input_path.name),
                          encoding="utf-8")
    if not quiet:
        click.echo(stats.summary(), err=True)
        if output is not None:
            click.echo(f"Results: {output} ({out_fmt})" + (f"; report: {report}" if report else "")
                       + (f"; review queue: {to_review}" if to_review else ""), err=True)
        click.echo("Suggestions only: a DSL decides. flagger never refers.", err=True)
    if stats.errors:
        sys.exit(EXIT_PARTIAL if stats.scanned else EXIT_FAILURE)


def _run_spark(input_path, output, out_fmt, read, eng, workers, master, quiet, to_review=None):
    try:
        from .. import spark as fs
    except ImportError:
        raise click.ClickException("--engine spark needs PySpark: pip install 'flagger[spark]'") from None
    try:
        return fs.scan_file(input_path, output, out_fmt=out_fmt, read=read, engine=eng,
                            master=master or f"local[{workers}]", quiet=quiet, to_review=to_review)
    except FlaggerError as exc:
        raise click.ClickException(exc.message) from None
