#!/usr/bin/env bash
# Install flagger and scan the bundled example notes (embedded defaults: bundled
# lexicons and models, SQLite review store). Results go to out/examples.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".[transformer]"
mkdir -p out
.venv/bin/flagger lexicon check
.venv/bin/flagger scan examples/notes.jsonl -o out/examples.jsonl --to-review sqlite:///out/review.db "$@"
echo "Results: out/examples.jsonl   Review queue: out/review.db (flagger serve, then http://127.0.0.1:8000/review)" >&2
