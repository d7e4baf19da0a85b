"""Batch-scan benchmark: throughput at 1 and 2 workers, peak memory against export size,
time to resume after a SIGKILL, and a Spark local-mode run for comparison.

    .venv/bin/python benchmarks/batch.py --model none
    .venv/bin/python benchmarks/batch.py --model default      # the default Flagger()

The export is made by benchmarks/generate_export.py into benchmarks/data/ (ignored by
git). Every run is a real ``flagger scan`` subprocess; its peak memory is the summed RSS
of the process and all its children, sampled every 0.1 s with psutil. Scan rates come
from the command's own summary line, which times the scan from after the Flagger is
built (building it is reported separately as ``startup_s``), so a slow lexicon load
does not hide the scaling. Results are merged into benchmarks/results/batch.json under
the model's key.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data"
RESULTS = ROOT / "benchmarks" / "results" / "batch.json"
FLAGGER = str(Path(sys.executable).parent / "flagger")
SUMMARY = re.compile(r"([\d,]+) records in ([\d.]+)s")


def export(n: int) -> Path:
    p = DATA / f"export_{n}.jsonl"
    if not p.exists():
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "generate_export.py"), "--notes", str(n),
                        "-o", str(p)], check=True)
    return p


def prefix(src: Path, n: int) -> Path:
    """The first ``n`` notes of ``src`` (the same notes for every run that uses it)."""
    p = DATA / f"{src.stem}_first{n}.jsonl"
    if not p.exists():
        with src.open("rb") as fi, p.open("wb") as fo:
            for i, line in enumerate(fi):
                if i >= n:
                    break
                fo.write(line)
    return p


def words(path: Path) -> int:
    return sum(len(json.loads(l)["text"].split()) for l in path.open(encoding="utf-8"))


def tree_rss(proc: psutil.Process, cpu: dict[int, float]) -> int:
    """Summed RSS of the process and its children; records each one's CPU seconds."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
            t = p.cpu_times()
            cpu[p.pid] = t.user + t.system
        except psutil.Error:
            pass
    return total


def run(cmd: list[str], *, env=None, kill_when=None) -> dict:
    """Run ``cmd``; return wall time, peak tree RSS, stderr and the summary's scan time.
    ``kill_when(elapsed)`` -> True sends SIGKILL to the whole process group."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})}, start_new_session=True)
    ps = psutil.Process(proc.pid)
    peak, killed, cpu = 0, False, {}
    load = os.getloadavg()[0]
    while proc.poll() is None:
        try:
            peak = max(peak, tree_rss(ps, cpu))
        except psutil.Error:
            pass
        if kill_when and kill_when(time.monotonic() - t0):
            os.killpg(proc.pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.1)
    _, err = proc.communicate()
    out = {"wall_s": round(time.monotonic() - t0, 2), "peak_rss_mib": round(peak / 2**20, 1),
           "returncode": proc.returncode, "killed": killed, "cpu_s": round(sum(cpu.values()), 1),
           "loadavg_1m_at_start": load}
    m = SUMMARY.search(err or "")
    if m:
        out["records"] = int(m.group(1).replace(",", ""))
        out["scan_s"] = float(m.group(2))
        out["startup_s"] = round(out["wall_s"] - out["scan_s"], 2)
    elif not killed:
        sys.stderr.write(err[-2000:])
    return out


SNAPSHOT: dict[str, str] = {}


def snapshot_data(out_dir: Path) -> dict[str, str]:
    """Copy the lexicons, context rules and models as they are now, and point every run
    at the copy: they are being edited while benchmarks run, and --resume (rightly)
    refuses to mix results from two lexicon versions."""
    import shutil

    snap = out_dir / "snapshot"
    shutil.rmtree(snap, ignore_errors=True)
    shutil.copytree(ROOT / "lexicons", snap / "lexicons")
    shutil.copytree(ROOT / "models", snap / "models")
    SNAPSHOT.update(lexicons=str(snap / "lexicons"), models=str(snap / "models"))
    os.environ["FLAGGER_CONTEXT_RULES"] = str(snap / "lexicons" / "context.yml")
    os.environ["FLAGGER_MODELS_DIR"] = str(snap / "models")
    return SNAPSHOT


def scan_cmd(src: Path, out: Path, model: str, workers: int, *extra: str) -> list[str]:
    cmd = [FLAGGER, "scan", str(src), "-o", str(out), "-w", str(workers), *extra]
    if SNAPSHOT:
        cmd += ["--lexicon-dir", SNAPSHOT["lexicons"]]
    if model != "default":
        cmd += ["--model", model]
    return cmd


def rates(res: dict, n_words: int) -> dict:
    if "scan_s" in res and res["scan_s"] > 0:
        res["notes_per_s"] = round(res["records"] / res["scan_s"], 1)
        res["words_per_s"] = round(n_words * res["records"] / res["records_total"] / res["scan_s"])
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--notes", type=int, default=200_000, help="size of the generated export")
    ap.add_argument("--model", default="none", help="none | tfidf | minilm | default (Flagger() as shipped)")
    ap.add_argument("--prefix", type=int, default=10_000,
                    help="notes timed for the 1-vs-2-worker comparison, the kill/resume and Spark runs")
    ap.add_argument("--mem-notes", type=int, default=None,
                    help="export size for the memory check (default: --notes); also run at a quarter of it")
    ap.add_argument("--skip-spark", action="store_true")
    ap.add_argument("--only", nargs="*", default=None, choices=["workers", "memory", "resume", "spark"],
                    help="run only these parts; results are merged into the existing entry")
    args = ap.parse_args()
    parts = set(args.only or ["workers", "memory", "resume", "spark"])
    if args.skip_spark:
        parts.discard("spark")

    DATA.mkdir(parents=True, exist_ok=True)
    out_dir = ROOT / "benchmarks" / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    snapshot_data(out_dir)
    full = export(args.notes)
    pre = prefix(full, args.prefix)
    n_words = words(pre)
    res: dict = {"model": args.model, "export_notes": args.notes, "prefix_notes": args.prefix,
                 "prefix_words": n_words, "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                                      "platform": platform.platform()},
                 "date": time.strftime("%Y-%m-%d %H:%M:%S"), "commands": {}}

    for w in ((1, 2) if "workers" in parts else ()):
        out = out_dir / f"bench_w{w}.jsonl"
        cmd = scan_cmd(pre, out, args.model, w)
        res["commands"][f"workers_{w}"] = " ".join(cmd)
        r = run(cmd)
        r["records_total"] = args.prefix
        res[f"workers_{w}"] = rates(r, n_words)
        print(f"workers={w}: {r}", file=sys.stderr)
    if "workers" in parts and res["workers_1"].get("notes_per_s") and res["workers_2"].get("notes_per_s"):
        res["speedup_2_vs_1"] = round(res["workers_2"]["notes_per_s"] / res["workers_1"]["notes_per_s"], 2)

    mem_n = args.mem_notes or args.notes
    mem_src = prefix(full, mem_n) if mem_n < args.notes else full
    mem_runs = (("memory_full", mem_src), ("memory_quarter", prefix(full, mem_n // 4)))
    for label, src in (mem_runs if "memory" in parts else ()):
        cmd = scan_cmd(src, out_dir / f"bench_{label}.jsonl", args.model, 2)
        res["commands"][label] = " ".join(cmd)
        r = run(cmd)
        r["notes"] = mem_n if label == "memory_full" else mem_n // 4
        res[label] = r
        print(f"{label}: {r}", file=sys.stderr)

    if "resume" in parts:
        kill_and_resume(args, out_dir, pre, res)
    if "spark" in parts:
        cmd = scan_cmd(pre, out_dir / "bench_spark.jsonl", args.model, 2, "--engine", "spark")
        res["commands"]["spark_local_2"] = " ".join(cmd)
        r = run(cmd)
        r["notes_per_s_wall"] = round(args.prefix / r["wall_s"], 1)
        res["spark_local_2"] = r
        print(f"spark: {r}", file=sys.stderr)

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    all_res = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    merged = {**all_res.get(args.model, {}), **res} if args.only else res
    merged["commands"] = {**all_res.get(args.model, {}).get("commands", {}), **res["commands"]}
    all_res[args.model] = merged
    RESULTS.write_text(json.dumps(all_res, indent=2) + "\n")
    print(json.dumps(merged, indent=2))


def kill_and_resume(args, out_dir: Path, pre: Path, res: dict) -> None:
    """Kill part-way (once the checkpoint shows 40% done), then time --resume."""
    out = out_dir / "bench_kill.jsonl"
    cp = out.with_name(out.name + ".checkpoint.json")
    cp.unlink(missing_ok=True)

    def half(_elapsed: float) -> bool:
        try:
            return json.loads(cp.read_text())["records"] >= 0.4 * args.prefix
        except (OSError, ValueError, KeyError):
            return False

    cmd = scan_cmd(pre, out, args.model, 2)
    killed = run(cmd, kill_when=half)
    at = json.loads(cp.read_text())["records"]
    first_new: dict[str, float] = {}

    def progressed(elapsed: float) -> bool:
        if "s" not in first_new:
            try:
                if json.loads(cp.read_text())["records"] > at:
                    first_new["s"] = round(elapsed, 2)
            except (OSError, ValueError, KeyError):
                pass
        return False

    resumed = run(cmd + ["--resume"], kill_when=progressed)
    # The summary of a resumed run covers the whole run, so its scan time is not this
    # run's; report this run's wall time and when its first new chunk was committed.
    for k in ("scan_s", "startup_s", "records"):
        resumed.pop(k, None)
    resumed["first_new_commit_s"] = first_new.get("s")
    resumed["records_resumed"] = args.prefix - at
    lines = sum(1 for _ in out.open("rb"))
    res["commands"]["resume"] = " ".join(cmd + ["--resume"])
    res["kill_resume"] = {"killed_after_records": at, "killed_run": killed, "resume_run": resumed,
                          "output_lines": lines, "exactly_once": lines == args.prefix}
    print(f"kill/resume: {res['kill_resume']}", file=sys.stderr)


if __name__ == "__main__":
    main()
