"""flagger users / purge / audit export / export-decisions through click's CliRunner."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from conftest import seed_notes
from flagger.cli import main
from flagger.review import DecisionIn
from flagger.store import ReviewStore

PASSWORD = "correct horse battery"


@pytest.fixture
def db(tmp_path, test_flagger):
    url = f"sqlite:///{tmp_path / 'review.db'}"
    st = ReviewStore(url)
    seed_notes(st, test_flagger)
    st.engine.dispose()
    return url


def run(*args, input=None):
    return CliRunner().invoke(main, list(args), input=input)


def test_review_cli_users_create_reads_password_from_stdin_and_never_echoes(db):
    r = run("users", "create", "ann", "--name", "Ann Lee", "--hide", "cse", "--password-stdin", "--db", db,
            input=PASSWORD + "\n")
    assert r.exit_code == 0, r.output
    assert PASSWORD not in r.output
    users = [json.loads(line) for line in run("users", "list", "--db", db).stdout.splitlines()]
    assert users == [{"id": 1, "username": "ann", "name": "Ann Lee", "role": "reviewer", "team": None,
                      "hidden_categories": ["cse"], "disabled": False}]
    assert ReviewStore(db).authenticate("ann", PASSWORD) is not None


def test_review_cli_users_prompt_is_hidden(db):
    r = run("users", "create", "bob", "--db", db, input=f"{PASSWORD}\n{PASSWORD}\n")
    assert r.exit_code == 0, r.output
    assert PASSWORD not in r.output and "Password" in r.output


@pytest.mark.parametrize("args, stdin, message", [
    (["users", "create", "x y", "--password-stdin"], PASSWORD, "username must be"),
    (["users", "create", "cat", "--password-stdin"], "short", "at least 10 characters"),
    (["users", "create", "dee", "--hide", "bullying", "--password-stdin"], PASSWORD, "unknown categories"),
    (["users", "disable", "nobody"], None, "no user 'nobody'"),
])
def test_review_cli_errors_are_one_line(db, args, stdin, message):
    r = run(*args, "--db", db, input=stdin)
    assert r.exit_code == 1
    assert r.output.strip().startswith("Error:") and message in r.output


def test_review_cli_disable_ends_sessions(db):
    run("users", "create", "ann", "--password-stdin", "--db", db, input=PASSWORD)
    st = ReviewStore(db)
    token, _ = st.create_session(1)
    assert run("users", "disable", "ann", "--db", db).exit_code == 0
    assert st.session_viewer(token) is None
    assert run("users", "disable", "ann", "--enable", "--db", db).exit_code == 0
    assert st.authenticate("ann", PASSWORD) is not None


def test_review_cli_purge_export_and_audit(db, tmp_path):
    st = ReviewStore(db)
    st.create_user("ann", PASSWORD)
    ann = st.viewer_for_user("ann")
    items = {(i.note_key, i.category): i.suggestion_id for i in st.queue(ann).items}
    st.decide(items[("n-001", "missing")], ann, DecisionIn(action="reject", reason="negated"))
    st.decide(items[("n-001", "county_lines")], ann, DecisionIn(action="confirm"))
    st.decide(items[("n-003", "cse")], ann, DecisionIn(action="reject", reason="not_about_child"))

    out, stats = tmp_path / "decisions.jsonl", tmp_path / "stats.json"
    r = run("export-decisions", str(out), "--indicator-stats", str(stats), "--db", db)
    assert r.exit_code == 0, r.output
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(x["id"], x["labels"]) for x in recs] == [("n-001", ["county_lines"]), ("n-003", [])]
    assert set(recs[0]) == {"id", "text", "labels", "evidence"}
    table = r.stdout.splitlines()
    assert table[0].startswith("indicator") and any(line.startswith("missing.went_missing") for line in table)
    assert json.loads(stats.read_text())["cse.hotel"]["not_about_child"] == 1

    assert run("purge", "--older-than", "90d", "--db", db).exit_code == 0
    r = run("purge", "--older-than", "0d", "--db", db)
    assert r.exit_code == 0 and "Purged the text of 2 note(s)" in r.output
    out2 = tmp_path / "after.jsonl"
    run("export-decisions", str(out2), "-q", "--db", db)
    assert out2.read_text() == ""  # only notes whose text is still held
    assert run("purge", "--older-than", "soon", "--db", db).exit_code == 2

    audit = tmp_path / "audit.jsonl"
    r = run("audit", "export", "--case", "C-200", "-o", str(audit), "--db", db)
    assert r.exit_code == 0
    events = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [e["action"] for e in events] == ["decide", "purge_text"]
    r = run("audit", "export", "--user", "ann", "--since", "2000-01-01", "--db", db)
    assert [json.loads(line)["action"] for line in r.stdout.splitlines()] == ["decide", "decide", "decide"]
    assert run("audit", "export", "--since", "yesterday", "--db", db).exit_code == 2


@pytest.mark.parametrize("cmd", [["users"], ["users", "create"], ["users", "disable"], ["purge"], ["audit"],
                                 ["audit", "export"], ["export-decisions"]])
def test_review_cli_commands_have_help(cmd):
    r = run(*cmd, "--help")
    assert r.exit_code == 0 and len(r.output.splitlines()) > 3
