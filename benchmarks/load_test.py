"""Load test of the HTTP service: a real `flagger serve` on 127.0.0.1, driven by a
bounded asyncio + httpx client.

    .venv/bin/python benchmarks/load_test.py --model none
    .venv/bin/python benchmarks/load_test.py --model tfidf --duration 20

It starts the server in a subprocess (temporary SQLite store, a fresh scanner key made
with `flagger keys create`, rate limit raised so it measures the scanner, not the
throttle), waits for /readyz, then for each concurrency level runs that many clients
posting the same ~200-word note to POST /v1/scan for --duration seconds after a short
warm-up, and reports requests/s and p50/p95/p99 latency. Every run stops by itself:
each level is bounded by its duration and by --max-requests. The server gets SIGTERM
at the end (graceful shutdown) and its exit code is recorded.

Client and server share this machine's cores, so the figures include the client's
own cost; they are an honest floor, not a best case. Two clients:

* ``--client wrk`` (default when the ``wrk`` binary is on PATH; Debian package ``wrk``):
  the C load generator with a Lua script for the POST body and key, one thread, one
  keep-alive connection per client. It costs the machine little CPU, so the figures
  are mostly the server's.
* ``--client httpx``: the asyncio + httpx client in this file (Python; ~1-2 ms of CPU
  a request taken from the same two cores).

Results: benchmarks/results/load_test.json (or --out), plus a table on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
FLAGGER = str(Path(sys.executable).with_name("flagger"))

# About 200 words, written for this benchmark; a few indicators, mostly ordinary text.
NOTE = (
    "Home visit with Jay (14) and his mother at the flat on Tuesday afternoon. Mum said Jay went missing "
    "on Friday night and did not come home until Sunday evening; she reported him missing to the police "
    "on Saturday morning. When he came back he had two phones and new trainers and would not say where "
    "they came from. Mum also found a wad of cash in his school bag, about three hundred pounds, which he "
    "said belonged to a friend. He has been getting rides from older boys in a car she does not know, and "
    "his phone rings late at night. School report that his attendance has dropped this term and he has "
    "missed several lessons after lunch. Jay was quiet during the visit and said he was tired. He denied "
    "anyone had hurt him and said he was fine. The flat was warm and clean, there was food in the fridge, "
    "and his younger sister was well presented and chatty. Mum is worried and asked for help with "
    "boundaries. Plan: return home interview to be offered, speak with school, and discuss with the DSL "
    "at supervision on Thursday. Next visit in two weeks."
)


# --tiny-lexicon: three indicators and two context rules, to measure the service's own
# cost (HTTP, auth, JSON, metrics, logging) apart from the pipeline's.
TINY = {
    "missing.yml": (
        'category: missing\nversion: "0.0.1"\nsources: {t: "bench"}\nindicators:\n'
        "  - {id: missing.went_missing, description: went missing, weight: 0.8, source: t,"
        " phrases: [went missing, reported him missing]}\n"),
    "county_lines.yml": (
        'category: county_lines\nversion: "0.0.1"\nsources: {t: "bench"}\nindicators:\n'
        "  - {id: county_lines.phones, description: phones, weight: 0.8, source: t, phrases: [two phones]}\n"
        "  - {id: county_lines.cash, description: cash, weight: 0.8, source: t, phrases: [wad of cash]}\n"),
    "context.yml": (
        "version: 0.0.1\nsources: {negex: NegEx}\nrules:\n"
        "  - {id: neg.no, literal: 'no', direction: forward, max_scope: 8, source: negex, attribute: negated}\n"
        "  - {id: neg.denied, literal: denied, direction: forward, max_scope: 8, source: negex,"
        " attribute: negated}\n"),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, int(round(p / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


async def run_level(url: str, token: str, concurrency: int, duration: float, warmup: float,
                    max_requests: int, floor: bool = False) -> dict:
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    latencies: list[float] = []
    errors = 0
    statuses: dict[int, int] = {}
    body = {"id": "bench-note", "text": NOTE, "case_id": "bench"}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30.0) as client:
        t_warm_end = time.perf_counter() + warmup
        t_end = t_warm_end + duration
        sent = 0

        async def worker() -> None:
            nonlocal errors, sent
            while True:
                now = time.perf_counter()
                if now >= t_end or sent >= max_requests:
                    return
                sent += 1
                t0 = time.perf_counter()
                try:
                    r = await (client.get("/healthz") if floor else client.post("/v1/scan", json=body))
                    code = r.status_code
                except httpx.HTTPError:
                    code = -1
                t1 = time.perf_counter()
                if t0 >= t_warm_end:  # measured window only
                    statuses[code] = statuses.get(code, 0) + 1
                    if code == 200:
                        latencies.append(t1 - t0)
                    else:
                        errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        # Requests started in the window may finish just after it: count the real span.
        measured = max(1e-9, time.perf_counter() - t_warm_end)
    latencies.sort()
    ms = [x * 1000 for x in latencies]
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": errors,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "seconds": round(measured, 2),
        "rps": round(len(latencies) / measured, 1),
        "p50_ms": round(percentile(ms, 50), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(ms[-1], 2) if ms else None,
        "mean_ms": round(statistics.fmean(ms), 2) if ms else None,
    }


WRK_CLIENT = "wrk 4.1 (C), 1 thread, keep-alive, one connection per client, on the same machine"

# Lua for wrk: the POST body and key, and a summary line wrk's own report lacks (p95).
_WRK_LUA = """
wrk.method = "{method}"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {token}"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("FLAGGER requests=%d duration_us=%d non2xx=%d connect=%d read=%d write=%d timeout=%d\\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout))
  for _, p in ipairs({{50, 95, 99}}) do
    io.write(string.format("FLAGGER p%d=%d\\n", p, latency:percentile(p)))
  end
  io.write(string.format("FLAGGER max=%d mean=%f\\n", latency.max, latency.mean))
end
"""


def run_level_wrk(url: str, token: str, concurrency: int, duration: float, warmup: float, tmp: Path,
                  *, floor: bool = False) -> dict:
    """One level driven by wrk: a warm-up run, then the measured run (both bounded by -d)."""
    body = json.dumps({"id": "bench-note", "text": NOTE, "case_id": "bench"})
    script = tmp / "wrk.lua"
    script.write_text(_WRK_LUA.format(method="GET" if floor else "POST",
                                      body="nil" if floor else "[[" + body + "]]", token=token))
    target = f"{url}/healthz" if floor else f"{url}/v1/scan"
    base = ["wrk", "-t", "1", "-c", str(concurrency), "-s", str(script), "--timeout", "30s"]
    if warmup > 0:
        subprocess.run([*base, "-d", f"{max(1, round(warmup))}s", target], check=True, capture_output=True)
    out = subprocess.run([*base, "-d", f"{max(1, round(duration))}s", target], check=True,
                         capture_output=True, text=True).stdout
    vals = {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", "\n".join(
        line for line in out.splitlines() if line.startswith("FLAGGER ")))}
    n, secs = int(vals["requests"]), vals["duration_us"] / 1e6
    errors = int(vals["non2xx"] + vals["connect"] + vals["read"] + vals["write"] + vals["timeout"])
    return {
        "concurrency": concurrency,
        "requests": n,
        "errors": errors,
        "statuses": {"non-2xx": int(vals["non2xx"])},
        "seconds": round(secs, 2),
        "rps": round(n / secs, 1),
        "p50_ms": round(vals["p50"] / 1000, 2),
        "p95_ms": round(vals["p95"] / 1000, 2),
        "p99_ms": round(vals["p99"] / 1000, 2),
        "max_ms": round(vals["max"] / 1000, 2),
        "mean_ms": round(vals["mean"] / 1000, 2),
    }


def wait_ready(url: str, proc: subprocess.Popen, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"flagger serve exited with {proc.returncode} before it was ready")
        try:
            r = httpx.get(f"{url}/readyz", timeout=2.0)
            if r.status_code == 200:
                return r.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"flagger serve not ready after {timeout:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="none", choices=["none", "tfidf", "minilm"])
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--concurrency", default="1,8,32", help="Comma-separated client counts.")
    ap.add_argument("--duration", type=float, default=15.0, help="Measured seconds per level.")
    ap.add_argument("--warmup", type=float, default=2.0, help="Unmeasured seconds before each level.")
    ap.add_argument("--max-requests", type=int, default=100_000, help="Hard cap per level.")
    ap.add_argument("--lexicon-dir", type=Path, default=None,
                    help="Serve with these lexicons (and their context.yml) instead of the bundled ones, "
                         "e.g. to measure the service's own overhead with a tiny lexicon.")
    ap.add_argument("--tiny-lexicon", action="store_true",
                    help="Serve a built-in three-indicator lexicon: the service's overhead alone.")
    ap.add_argument("--healthz", action="store_true",
                    help="Drive GET /healthz instead: the floor set by HTTP, uvicorn and this client.")
    ap.add_argument("--client", choices=["wrk", "httpx"], default="wrk" if shutil.which("wrk") else "httpx",
                    help="Load generator (default wrk when installed, else httpx).")
    ap.add_argument("--ready-timeout", type=float, default=300.0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "load_test.json")
    args = ap.parse_args()
    levels = [int(x) for x in args.concurrency.split(",") if x.strip()]

    tmp = Path(tempfile.mkdtemp(prefix="flagger-load-"))
    env = {**os.environ,
           "FLAGGER_DATABASE_URL": f"sqlite:///{tmp / 'review.db'}",
           "FLAGGER_RATE_LIMIT_PER_MINUTE": "100000000",
           "FLAGGER_RATE_LIMIT_BURST": "1000000"}
    env.pop("FLAGGER_CONFIG", None)
    if args.tiny_lexicon:
        args.lexicon_dir = tmp / "tiny"
        args.lexicon_dir.mkdir()
        for name, body in TINY.items():
            (args.lexicon_dir / name).write_text(body)
    if args.lexicon_dir:
        env["FLAGGER_LEXICON_DIR"] = str(args.lexicon_dir.resolve())
        env["FLAGGER_CONTEXT_RULES"] = str((args.lexicon_dir / "context.yml").resolve())
    key = subprocess.run([FLAGGER, "keys", "create", "--name", "load-test", "--role", "scanner"],
                         env=env, check=True, capture_output=True, text=True)
    token = key.stdout.strip()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp / "server.log", "w")
    server_cmd = [FLAGGER, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(args.workers),
                  "--model", args.model]
    proc = subprocess.Popen(server_cmd, env=env, stdout=subprocess.DEVNULL, stderr=log)
    results = []
    try:
        t0 = time.perf_counter()
        ready = wait_ready(url, proc, args.ready_timeout)
        startup_s = time.perf_counter() - t0
        for c in levels:
            load_before = os.getloadavg()[0]
            if args.client == "wrk":
                res = run_level_wrk(url, token, c, args.duration, args.warmup, tmp, floor=args.healthz)
            else:
                res = asyncio.run(run_level(url, token, c, args.duration, args.warmup, args.max_requests,
                                            floor=args.healthz))
            # Other work on the machine shows here: 1-minute load average before and after.
            res["loadavg_1m"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
            results.append(res)
            print(f"  {c:>3} clients: {res['rps']:>7} req/s  p50 {res['p50_ms']:>7} ms  p95 {res['p95_ms']:>7} ms  "
                  f"p99 {res['p99_ms']:>7} ms  errors {res['errors']}", file=sys.stderr)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            exit_code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            exit_code = "killed after 30 s"
        log.close()

    report = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "benchmarks/load_test.py", *sys.argv[1:]]),
        "server": " ".join(["flagger", *server_cmd[1:]]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "model": args.model,
        "versions": ready.get("versions"),
        "note_words": len(NOTE.split()),
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "startup_s": round(startup_s, 1),
        "shutdown_exit_code": exit_code,
        "client": (WRK_CLIENT if args.client == "wrk"
                   else "asyncio + httpx, keep-alive, one connection per client, on the same machine"),
        "levels": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # Keep one entry per model, so the --model none and later model runs sit side by side.
    existing = {}
    if args.out.is_file():
        try:
            existing = json.loads(args.out.read_text())
        except ValueError:
            existing = {}
    runs = existing.get("runs", {}) if isinstance(existing, dict) else {}
    name = f"model={args.model},workers={args.workers}"
    if args.client != "wrk":
        name += f",client={args.client}"
    if args.healthz:
        name += ",endpoint=healthz"
        report["endpoint"] = "GET /healthz"
    if args.lexicon_dir:
        name += f",lexicons={args.lexicon_dir.name}"
        report["lexicons"] = "built-in tiny lexicon (3 indicators)" if args.tiny_lexicon else str(args.lexicon_dir)
    runs[name] = report
    args.out.write_text(json.dumps({"runs": runs}, indent=2) + "\n")

    print(f"\nflagger serve --model {args.model} --workers {args.workers}; {report['note_words']}-word note; "
          f"{args.duration:.0f} s per level; start-up {report['startup_s']} s; shutdown exit {exit_code}")
    print(f"{'clients':>7} | {'req/s':>8} | {'p50 ms':>8} | {'p95 ms':>8} | {'p99 ms':>8} | {'max ms':>8} | errors")
    print("-" * 72)
    for r in results:
        print(f"{r['concurrency']:>7} | {r['rps']:>8} | {r['p50_ms']:>8} | {r['p95_ms']:>8} | {r['p99_ms']:>8} | "
              f"{r['max_ms']:>8} | {r['errors']}")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
