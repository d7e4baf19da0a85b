"""`flagger check`, `flagger --help` and help text for every command, through CliRunner
(exit code and exact output). `flagger scan` file formats are tested elsewhere."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

import flagger.engine
from flagger.cli import main
from flagger.engine import Flagger
from flagger.schema import NoteResult

FOOTER = "Suggestions only: a DSL decides. flagger never refers."


@pytest.fixture(scope="module")
def shared_flagger() -> Flagger:
    return Flagger(model="none")


@pytest.fixture
def runner(monkeypatch, shared_flagger) -> CliRunner:
    """A CliRunner whose `flagger check` reuses one Flagger instead of building its own
    (about two seconds each); only model="none" may be asked for."""

    def _factory(*, model=None, **kwargs):
        assert model == "none" and not kwargs
        return shared_flagger

    monkeypatch.setattr(flagger.engine, "Flagger", _factory)
    return CliRunner()


CHECK_CASES = [
    pytest.param(
        "No signs of bruising. He came back from Swindon with two phones and £300.",
        [
            "No signs of bruising. He came back from Swindon with [[two phones]]{county_lines} and £300.",
            "",
            "- county_lines (low, score 0.55): 1 indicator hit(s) for County lines / child criminal "
            "exploitation: 'two phones'. A suggestion for DSL review.",
            "  set aside: 'bruising' (physical_abuse) - negated by 'No signs of'",
            "",
            FOOTER,
        ],
        id="highlight-and-set-aside",
    ),
    pytest.param(
        "He enjoyed football after school and ate his tea.",
        ["He enjoyed football after school and ate his tea.", "", "No concerns suggested.", "", FOOTER],
        id="no-concerns",
    ),
    pytest.param(
        "If he goes missing again, call the police.",
        [
            "If he goes missing again, call the police.",
            "",
            "No concerns suggested.",
            "  set aside: 'goes missing' (missing) - hypothetical by 'If'",
            "",
            FOOTER,
        ],
        id="hypothetical-set-aside",
    ),
    pytest.param(
        "She told her teacher she was raped at a party.\nNo food in the house.",
        [
            "She told her teacher she was [[raped]]{sexual_abuse} at a party.",
            "[[No food in the house]]{neglect}.",
            "",
            "- sexual_abuse (high, score 0.90): 1 indicator hit(s) for Sexual abuse: 'raped'. "
            "A suggestion for DSL review.",
            "- neglect (low, score 0.60): 1 indicator hit(s) for Neglect: 'No food in the house'. "
            "A suggestion for DSL review.",
            "",
            FOOTER,
        ],
        id="two-categories-multiline",
    ),
]


@pytest.mark.parametrize(("note", "lines"), CHECK_CASES)
def test_cli_core_check_output(runner, note, lines):
    result = runner.invoke(main, ["check", note, "--model", "none"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "\n".join(lines) + "\n"
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("note", "categories"),
    [("He came back from Swindon with two phones and £300.", ["county_lines"])],
)
def test_cli_core_check_builds_its_own_flagger(note, categories):
    # No runner fixture: this one goes through the real Flagger construction.
    result = CliRunner().invoke(main, ["check", note, "--model", "none", "--json"])
    assert result.exit_code == 0, result.output
    assert NoteResult.model_validate_json(result.stdout).categories == categories


@pytest.mark.parametrize(
    ("note", "categories", "evidence"),
    [
        ("He came back from Swindon with two phones and £300.", ["county_lines"], ["two phones"]),
        ("No signs of bruising.", [], []),
    ],
)
def test_cli_core_check_json_is_a_note_result(runner, note, categories, evidence):
    result = runner.invoke(main, ["check", note, "--model", "none", "--json"])
    assert result.exit_code == 0, result.output
    parsed = NoteResult.model_validate_json(result.stdout)
    assert parsed.id == "check"
    assert parsed.status == "scanned"
    assert parsed.categories == categories
    assert [e.text for c in parsed.concerns for e in c.evidence] == evidence
    assert parsed.versions.model is None


@pytest.mark.parametrize(
    ("note", "stderr"),
    [
        ("   ", "Error: 'text' is empty\n"),
        ("Jo \x00\x01\x02\x03\x04 bruise", "Error: 'text' is not valid UTF-8 text (undecodable or binary bytes)\n"),
    ],
)
def test_cli_core_check_bad_note_is_one_error_line(runner, note, stderr):
    result = runner.invoke(main, ["check", note, "--model", "none"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["check", "some note", "--model", "bert"], "Invalid value for '--model'"),
        (["check"], "Missing argument 'TEXT'"),
        (["no-such-command"], "No such command 'no-such-command'"),
    ],
)
def test_cli_core_misuse_exits_2(args, message):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stdout == ""


def _walk(group: click.Group, path: tuple[str, ...] = ()):
    for name, cmd in sorted(group.commands.items()):
        yield path + (name,), cmd
        if isinstance(cmd, click.Group):
            yield from _walk(cmd, path + (name,))


COMMANDS = list(_walk(main))


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_cli_core_every_command_has_help(path, command):
    assert (command.help or "").strip(), f"flagger {' '.join(path)} has no help text"
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Usage: main {' '.join(path)}")
    # click re-wraps the help text, so compare word sequences.
    assert " ".join(command.help.split()[:8]) in " ".join(result.stdout.split())


@pytest.mark.parametrize("args", [["--help"], ["-h"]])
def test_cli_core_main_help(args):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: main [OPTIONS] COMMAND [ARGS]...")
    assert "never refers" in result.stdout
    for name in ("check", "lexicon", "scan"):
        assert f"  {name}" in result.stdout


@pytest.mark.parametrize("expected", [["check", "lexicon", "scan"]])
def test_cli_core_commands_registered(expected):
    assert set(expected) <= set(main.commands)
    assert "check" in main.commands["lexicon"].commands
