"""A real `flagger scan` killed with SIGKILL part-way, then --resume: exactly one
result per input record, byte-identical to an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLAGGER = [sys.executable, "-m", "flagger.cli"] if not (Path(sys.executable).parent / "flagger").exists() \
    else [str(Path(sys.executable).parent / "flagger")]


def _export(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            text = ("He went missing again and came back with two phones." if i % 7 == 0
                    else "Routine home visit, all well, nothing to add.")
            if i % 50 == 13:
                fh.write('{"id": "broken\n')  # an unreadable line among the good ones
                continue
            fh.write(json.dumps({"id": f"k{i:05d}", "text": f"{text} Visit {i}.", "team": "east"}) + "\n")


@pytest.mark.slow
@pytest.mark.parametrize("fmt,workers", [("jsonl", "2"), ("csv", "1"), ("parquet", "2")])
def test_batch_kill_then_resume_exactly_once(tmp_path, test_lexicon_dir, fmt, workers):
    src = tmp_path / "in.jsonl"
    _export(src, 400)
    out, ref = tmp_path / f"out.{fmt}", tmp_path / f"ref.{fmt}"
    base = [*FLAGGER, "scan", str(src), "--model", "none", "--lexicon-dir", str(test_lexicon_dir), "-q",
            "--chunk-size", "10", "-w", workers]
    env = {**os.environ, "FLAGGER_COMMIT_SECONDS": "0"}
    if fmt == "parquet":
        env["FLAGGER_PARQUET_PART_ROWS"] = "30"
    subprocess.run([*base, "-o", str(ref)], env=env, check=False, cwd=ROOT, timeout=600)

    slow = {**env, "FLAGGER_TEST_CHUNK_DELAY": "0.3"}
    proc = subprocess.Popen([*base, "-o", str(out)], env=slow, cwd=ROOT, start_new_session=True)
    cp = out.with_name(out.name + ".checkpoint.json")
    deadline = time.monotonic() + 300
    committed = 0
    while time.monotonic() < deadline:  # wait for real progress, then kill mid-run
        try:
            committed = json.loads(cp.read_text())["records"]
        except (OSError, ValueError, KeyError):
            committed = 0
        if committed >= 100:
            break
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 100 <= committed < 400, "the kill must land part-way"
    assert not json.loads(cp.read_text())["done"]

    r = subprocess.run([*base, "-o", str(out), "--resume"], env=env, cwd=ROOT, timeout=600)
    assert r.returncode == 3  # the broken lines are error results
    if fmt == "parquet":
        import pyarrow.parquet as pq

        got, want = pq.read_table(out).to_pylist(), pq.read_table(ref).to_pylist()
        assert [g["id"] for g in got] == [w["id"] for w in want]
        assert len(got) == 400
        assert got == want
    else:
        assert out.read_bytes() == ref.read_bytes()
        if fmt == "jsonl":
            ids = [json.loads(l)["id"] for l in out.read_text().splitlines()]
            assert len(ids) == 400 and len(set(ids)) == 400
