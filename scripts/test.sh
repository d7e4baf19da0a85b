#!/usr/bin/env bash
# Install everything the tests need on a fresh machine, then run them.
# Used by CI (.ci/run) and named in the README.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages: Chromium for the browser tests (PostgreSQL 15 and Java 17 are on the machine).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium missing and not root: browser tests will be skipped" >&2
  fi
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --upgrade pip
# torch is pinned (==2.13.0) in pyproject: pip takes the CPU build from local disk.
.venv/bin/pip install -q -e ".[transformer,spark,test]"

export PYTHONHASHSEED=0
.venv/bin/python -m pytest -q "$@"
