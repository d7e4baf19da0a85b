"""Speed of `flagger scan` on one core: words/s and notes/s.

    python benchmarks/scan_speed.py                     # 20,000 notes, models none + tfidf
    python benchmarks/scan_speed.py --notes 50000 --model tfidf

Generates an export with benchmarks/generate_export.py (not committed), runs the real
`flagger scan` command with one worker for each model, and reports throughput two
ways: over the whole command (start-up included) and over the scan alone (the
command's time minus the time the same command takes on a one-note file). Writes
benchmarks/results/scan_speed.json. The issue's target is >= 100,000 words/s on one
core for the default path.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent
FLAGGER = [str(Path(sys.executable).with_name("flagger"))]


def run(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--notes", type=int, default=20000)
    ap.add_argument("--words", type=int, default=120)
    ap.add_argument("--model", action="append", choices=["none", "tfidf", "minilm"])
    args = ap.parse_args()
    data = HERE / "data"
    data.mkdir(exist_ok=True)
    export = data / f"speed_{args.notes}.jsonl"
    if not export.exists():
        subprocess.run([sys.executable, str(HERE / "generate_export.py"), "--notes", str(args.notes),
                        "--words", str(args.words), "-o", str(export)], check=True)
    one = data / "speed_one.jsonl"
    one.write_text(export.open().readline())
    words = sum(len(json.loads(l)["text"].split()) for l in export.open())
    out = {"notes": args.notes, "words": words, "cpu_count": os.cpu_count(),
           "load_average_before": os.getloadavg()[0], "runs": {}}
    for model in args.model or ["none", "tfidf"]:
        base = [*FLAGGER, "scan", "--workers", "1", "--quiet", "--model", model, "-o", str(data / "speed_out.jsonl")]
        startup = min(run([*base[:-1], str(data / "speed_one_out.jsonl"), str(one)]) for _ in range(2))
        total = run([*base, str(export)])
        scan = max(total - startup, 1e-9)
        r = {"seconds_total": round(total, 2), "seconds_startup": round(startup, 2),
             "words_per_s_total": round(words / total), "words_per_s_scan": round(words / scan),
             "notes_per_s_scan": round(args.notes / scan, 1)}
        out["runs"][model] = r
        print(f"model={model:6} {r['words_per_s_scan']:>9,} words/s  {r['notes_per_s_scan']:>7} notes/s "
              f"(scan only; {r['words_per_s_total']:,} words/s with {startup:.1f}s start-up), 1 worker")
    out["load_average_after"] = os.getloadavg()[0]
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "scan_speed.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
