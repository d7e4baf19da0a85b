"""Shared fixtures: a throwaway PostgreSQL cluster, review stores on SQLite and PostgreSQL,
and a small fixed lexicon so review tests do not move when the real lexicons change."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("FLAGGER_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def pg_server():
    """A PostgreSQL 15 cluster for this test session, run as the postgres user.

    Yields a base URL without a database name; skipped (with the reason) when the
    binaries or the postgres user are missing. Set FLAGGER_TEST_PG_URL to use a server of
    your own instead.
    """
    own = os.environ.get("FLAGGER_TEST_PG_URL")
    if own:
        yield own.rstrip("/")
        return
    if not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
        pytest.skip(f"PostgreSQL binaries not found in {PG_BIN} (set FLAGGER_PG_BIN or FLAGGER_TEST_PG_URL)")
    try:
        subprocess.run(["id", "postgres"], check=True, capture_output=True)
    except subprocess.CalledProcessError:
        pytest.skip("no 'postgres' system user to run a throwaway PostgreSQL cluster")
    # In memory where we can, and without fsync: a throwaway cluster needs no durability.
    root = Path(tempfile.mkdtemp(prefix="flagger-pg-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    data = root / "data"
    shutil.chown(root, "postgres", "postgres")
    port = _free_port()
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_pg, str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    subprocess.run([*as_pg, str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", f"-p {port} -k {root} -h 127.0.0.1 -F -c full_page_writes=off",
                    "-l", str(root / "log"), "-w", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run([*as_pg, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


_db_counter = itertools.count()


def _pg_admin(base: str, sql: str) -> None:
    import psycopg

    plain = base.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain + "/postgres", autocommit=True) as conn:
        conn.execute(sql)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request, tmp_path):
    """A URL for an empty review database: a SQLite file, then a fresh PostgreSQL database
    (dropped after the test)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'review.db'}"
        return
    base = request.getfixturevalue("pg_server")
    name = f"flagger_test_{os.getpid()}_{next(_db_counter)}"
    _pg_admin(base, f'CREATE DATABASE "{name}"')
    yield f"{base}/{name}"
    _pg_admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fast_hasher():
    """argon2id with tiny costs: real hashing, fast enough for many test users."""
    from argon2 import PasswordHasher

    return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture
def store(store_url):
    from flagger.store import ReviewStore

    st = ReviewStore(store_url, password_hasher=fast_hasher())
    yield st
    st.engine.dispose()


# A small fixed lexicon for review tests: the real lexicons are edited by others and
# these tests are about the review workflow, not about what the lexicons catch.
TEST_LEXICONS = {
    "missing.yml": """
category: missing
version: "0.0.1"
sources: {t: "test"}
indicators:
  - id: missing.went_missing
    description: went missing
    weight: 0.8
    source: t
    phrases: [went missing, gone missing, reported missing]
  - id: missing.overnight
    description: out overnight
    weight: 0.3
    source: t
    phrases: [out overnight]
""",
    "county_lines.yml": """
category: county_lines
version: "0.0.1"
sources: {t: "test"}
indicators:
  - id: county_lines.phones
    description: several phones
    weight: 0.8
    source: t
    phrases: [two phones, three phones, burner phone]
  - id: county_lines.cash
    description: unexplained cash
    weight: 0.8
    source: t
    phrases: [large amount of cash, wad of cash]
""",
    "cse.yml": """
category: cse
version: "0.0.1"
sources: {t: "test"}
indicators:
  - id: cse.older_boyfriend
    description: older boyfriend
    weight: 0.8
    source: t
    phrases: [older boyfriend]
  - id: cse.hotel
    description: taken to hotels
    weight: 0.8
    source: t
    phrases: [taken to a hotel]
""",
}


@pytest.fixture(scope="session")
def test_lexicon_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("lexicons")
    for name, body in TEST_LEXICONS.items():
        (d / name).write_text(body.lstrip(), encoding="utf-8")
    return d


@pytest.fixture(scope="session")
def test_flagger(test_lexicon_dir):
    from flagger import Flagger

    return Flagger(model="none", lexicon_dir=str(test_lexicon_dir))


# Notes for review tests: (id, case, date, team, text).
REVIEW_NOTES = [
    ("n-001", "C-100", "2025-01-06", "east",
     "Jay went missing on Friday and came back with two phones and a large amount of cash."),
    ("n-002", "C-100", "2025-02-03", "east",
     "Jay has an older boyfriend who picks him up. He has gone missing again."),
    ("n-003", "C-200", "2025-02-10", "west",
     "Mum said Kim was taken to a hotel by an older boyfriend last weekend."),
    ("n-004", "C-300", "2025-03-01", "west",
     "No sign he went missing this term. Attendance good. Lives with his aunt."),
]


def seed_notes(store, flagger, notes=REVIEW_NOTES) -> dict[str, list[int]]:
    """Scan ``notes`` and queue them; returns suggestion ids per note id."""
    out = {}
    for nid, case_id, date, team, text in notes:
        r = flagger.scan(text, id=nid, meta={"case_id": case_id, "note_date": date})
        out[nid] = store.enqueue(r, text, team=team)
    return out
