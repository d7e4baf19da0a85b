"""`flagger serve` for real: a subprocess on 127.0.0.1, a scan, a graceful SIGTERM, and
its logs (uvicorn's and the JSON access lines) free of note text."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from test_api_service import SECRET, write_lexicons

FLAGGER = str(Path(sys.executable).with_name("flagger"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(proc, url: str, err_log: Path, timeout: float) -> None:
    """Poll /readyz until the server answers 200; fail with its stderr if it exits."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, err_log.read_text()
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"not ready in {timeout:.0f} s"
        time.sleep(0.3)


def _serve_env(tmp_path: Path) -> tuple[dict[str, str], str]:
    """A minimal environment for `flagger serve` (test lexicons, a SQLite store in
    tmp_path) and a scanner key made in that store."""
    lex = write_lexicons(tmp_path / "lex")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "FLAGGER_DATABASE_URL": f"sqlite:///{tmp_path / 'review.db'}",
           "FLAGGER_LEXICON_DIR": str(lex), "FLAGGER_CONTEXT_RULES": str(lex / "context.yml")}
    from flagger.store import ReviewStore  # keys CLI is tested in test_api_cli.py; save a start-up here

    _, token = ReviewStore(env["FLAGGER_DATABASE_URL"]).create_api_key("t", "scanner")
    return env, token


@pytest.mark.slow
def test_api_serve_subprocess_scans_and_shuts_down_gracefully(tmp_path):
    env, token = _serve_env(tmp_path)
    port = _free_port()
    out, err = tmp_path / "stdout.log", tmp_path / "stderr.log"
    with open(out, "w") as o, open(err, "w") as e:
        proc = subprocess.Popen([FLAGGER, "serve", "--port", str(port), "--model", "none"], env=env,
                                stdout=o, stderr=e)
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_ready(proc, url, err, 90)
            auth = {"Authorization": f"Bearer {token}"}
            r = httpx.post(f"{url}/v1/scan", json={"id": "s1", "text": SECRET, "queue": True}, headers=auth)
            assert r.status_code == 200 and r.json()["results"][0]["concerns"][0]["category"] == "county_lines"
            assert httpx.post(f"{url}/v1/scan?text=went+missing", json={"id": "s2", "text": SECRET, "x": 1},
                              headers=auth).status_code == 422
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    logs_out, logs_err = out.read_text(), err.read_text()
    assert "Finished server process" in logs_err and "Application shutdown complete" in logs_err
    access = [json.loads(line) for line in logs_out.splitlines() if line.startswith("{")]
    assert [(a["endpoint"], a["status"]) for a in access if a["endpoint"] == "/v1/scan"] == [
        ("/v1/scan", 200), ("/v1/scan", 422)]
    for text in (logs_out, logs_err):
        assert SECRET not in text and "burner" not in text and "went+missing" not in text


@pytest.mark.slow
def test_api_serve_two_workers_metrics_add_up(tmp_path):
    """With --workers 2, every scrape of /metrics counts the scans of both workers."""
    env, token = _serve_env(tmp_path)
    env["TMPDIR"] = str(tmp_path)  # where the server makes its metrics folder
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with open(tmp_path / "err.log", "w") as e:
        proc = subprocess.Popen([FLAGGER, "serve", "--port", str(port), "--model", "none", "--workers", "2"],
                                env=env, stdout=subprocess.DEVNULL, stderr=e)
    try:
        _wait_ready(proc, url, tmp_path / "err.log", 120)
        auth = {"Authorization": f"Bearer {token}"}
        n = 12
        # Fresh connections, so uvicorn's workers share them out between them.
        for i in range(n):
            with httpx.Client() as c:
                assert c.post(f"{url}/v1/scan", json={"id": f"m{i}", "text": SECRET}, headers=auth).status_code == 200
        metrics_dirs = [p for p in tmp_path.iterdir() if p.name.startswith("flagger-metrics-")]
        assert len(metrics_dirs) == 1 and any(metrics_dirs[0].iterdir())
        for _ in range(4):
            with httpx.Client() as c:
                body = c.get(f"{url}/metrics").text
            assert f'flagger_notes_scanned_total{{status="scanned"}} {float(n)}' in body, body[:2000]
            assert SECRET not in body
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert not any(p.name.startswith("flagger-metrics-") for p in tmp_path.iterdir())
