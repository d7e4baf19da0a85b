"""Spark local mode gives the same results as the single-machine scan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pyspark = pytest.importorskip("pyspark")

DATA = Path(__file__).parent / "data" / "batch"


@pytest.fixture(scope="module")
def spark():
    from flagger.spark import get_session

    s = get_session("local[2]", "flagger-test")
    yield s
    s.stop()


def _local(path, test_lexicon_dir, **read):
    from flagger.batch import EngineConfig, ReadOptions, get_flagger, read_records

    fl = get_flagger(EngineConfig(model="none", lexicon_dir=str(test_lexicon_dir)))
    return list(fl.scan_numbered(read_records(path, ReadOptions(**read))))


@pytest.mark.slow
def test_batch_spark_dataframe_matches_local(spark, test_lexicon_dir):
    from flagger.batch import EngineConfig, ReadOptions, result_from_row
    from flagger.spark import LINE_COL, scan_dataframe, with_line_numbers

    # Number the rows in file order first, then shuffle them over 3 partitions.
    df = with_line_numbers(spark.read.parquet(str(DATA / "notes.parquet"))).repartition(3)
    res = scan_dataframe(df, read=ReadOptions(), engine=EngineConfig(model="none", lexicon_dir=str(test_lexicon_dir)),
                         line_col=LINE_COL)
    rows = sorted((r.asDict() for r in res.collect()), key=lambda r: r[LINE_COL])
    got = [result_from_row(r) for r in rows]
    want = _local(DATA / "notes.parquet", test_lexicon_dir)
    assert [g.id for g in got] == [w.id for w in want]
    assert [g.model_dump(exclude={"meta"}) for g in got] == [w.model_dump(exclude={"meta"}) for w in want]
    assert [g.meta for g in got] == [w.meta for w in want]


@pytest.mark.slow
@pytest.mark.parametrize("name,opts", [
    ("notes_semicolon.csv", ["--id-col", "note_id", "--text-col", "body", "--date-col", "date"]),
    ("notes.parquet", []),
])
def test_batch_spark_cli_matches_local(spark, tmp_path, test_lexicon_dir, name, opts):
    from click.testing import CliRunner

    from flagger.cli import main

    outs = {}
    for engine in ("local", "spark"):
        out = tmp_path / f"{engine}.jsonl"
        r = CliRunner().invoke(main, ["scan", str(DATA / name), "-o", str(out), "--engine", engine, "--model", "none",
                                      "--lexicon-dir", str(test_lexicon_dir), "-w", "2", *opts])
        assert r.exit_code in (0, 3), r.output
        outs[engine] = [json.loads(l) for l in out.read_text().splitlines()]
    assert outs["spark"] == outs["local"]


def _queue(url):
    from sqlalchemy import select

    from flagger.store import Note, ReviewStore, Suggestion

    with ReviewStore(url).session() as s:
        notes = {n.id: n for n in s.scalars(select(Note)).all()}
        return sorted((notes[g.note_id].note_key, notes[g.note_id].source, g.category)
                      for g in s.scalars(select(Suggestion)).all())


@pytest.mark.slow
@pytest.mark.parametrize("out_name", ["o.jsonl", "o.parquet"])
def test_batch_spark_to_review_matches_local_and_is_idempotent(spark, tmp_path, test_lexicon_dir, out_name):
    from click.testing import CliRunner

    from flagger.cli import main

    queues = {}
    for engine in ("local", "spark"):
        url = f"sqlite:///{tmp_path / (engine + '.db')}"
        for _ in range(2):  # a rescan must not duplicate queue items
            r = CliRunner().invoke(main, ["scan", str(DATA / "notes.parquet"), "-o", str(tmp_path / engine / out_name),
                                          "--engine", engine, "--model", "none", "--to-review", url,
                                          "--lexicon-dir", str(test_lexicon_dir), "-w", "2"])
            assert r.exit_code in (0, 3), r.output
        queues[engine] = _queue(url)
    assert queues["spark"] == queues["local"]
    assert queues["spark"] and all(src == "batch" for _, src, _ in queues["spark"])
