"""Broken lexicon and context-rule files (kept as test data under tests/data/) each
raise one LexiconError whose message names the file, the indicator or rule, and the
field, so a DSL editing a file can find and fix the problem."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from flagger.categories import CATEGORY_KEYS
from flagger.cli import main
from flagger.context import load_context_rules
from flagger.errors import LexiconError
from flagger.lexicon import CONTEXT_FILE, load_lexicons

DATA = Path(__file__).parent / "data"
BAD_LEXICONS = DATA / "lexicons_bad"
BAD_CONTEXT = DATA / "context_bad"

# (folder under lexicons_bad/, regex the single problem must match). Each regex names
# the file, then the indicator where the problem belongs to one, then the field.
LEXICON_CASES = [
    ("bad_yaml", r"^neglect\.yml: not valid YAML at line 12, column 13: "),
    ("unknown_category", r"^bogus\.yml: field 'category': unknown category 'bogus'$"),
    (
        "weight_over_one",
        r"^neglect\.yml: indicator 'neglect\.no_food' \(indicators\[0\]\) field 'weight': "
        r"Input should be less than or equal to 1$",
    ),
    (
        "missing_description",
        r"^neglect\.yml: indicator 'neglect\.no_food' \(indicators\[0\]\) field 'description': Field required$",
    ),
    ("duplicate_id", r"^neglect\.yml: indicator 'neglect\.no_food' \(indicators\[1\]\) field 'id': duplicate id$"),
    ("wrong_prefix", r"^neglect\.yml: indicator 'cse\.no_food' field 'id': must start with 'neglect\.'$"),
    (
        "unknown_source",
        r"^neglect\.yml: indicator 'neglect\.no_food' field 'source': 'nice_2017' is not a key of 'sources'$",
    ),
    ("invalid_pattern", r"^neglect\.yml: indicator 'neglect\.no_food' field 'patterns\[0\]': .*pattern"),
    ("file_name_mismatch", r"^neglect_extra\.yml: file name must be 'neglect\.yml' for its category$"),
    (
        "nothing_to_match",
        r"^neglect\.yml: indicator 'neglect\.no_food' \(indicators\[0\]\) field '\(entry\)': "
        r"Value error, needs at least one phrase or pattern$",
    ),
    (
        "unknown_field",
        r"^neglect\.yml: indicator 'neglect\.no_food' \(indicators\[0\]\) field 'colour': "
        r"Extra inputs are not permitted$",
    ),
]


@pytest.mark.parametrize(("folder", "expected"), LEXICON_CASES, ids=[c[0] for c in LEXICON_CASES])
def test_lexicon_errors_one_problem_per_file(folder, expected):
    with pytest.raises(LexiconError, match=r"\[E101\] 1 problem\(s\) in lexicon files") as info:
        load_lexicons(BAD_LEXICONS / folder)
    assert len(info.value.problems) == 1
    assert re.search(expected, info.value.problems[0]), info.value.problems[0]


@pytest.mark.parametrize(("folder", "expected"), LEXICON_CASES, ids=[c[0] for c in LEXICON_CASES])
def test_lexicon_errors_message_carries_the_problem(folder, expected):
    # The exception text itself (what a log or the CLI shows) holds the problem line.
    body = expected.lstrip("^").rstrip("$")
    with pytest.raises(LexiconError, match=body):
        load_lexicons(BAD_LEXICONS / folder)


@pytest.mark.parametrize(
    ("folder", "expected"),
    [
        (
            "several_problems",
            [
                "cse.yml: indicator 'cse.gifts' (indicators[0]) field 'weight': Input should be less than or equal to 1",
                "neglect.yml: indicator 'neglect.no_food' (indicators[1]) field 'id': duplicate id",
                "neglect.yml: indicator 'cse.older_boyfriend' field 'id': must start with 'neglect.'",
                "neglect.yml: indicator 'cse.older_boyfriend' field 'source': 'unknown_src' is not a key of 'sources'",
            ],
        ),
    ],
)
def test_lexicon_errors_all_problems_reported_at_once(folder, expected):
    with pytest.raises(LexiconError, match=rf"\[E101\] {len(expected)} problem\(s\) in lexicon files") as info:
        load_lexicons(BAD_LEXICONS / folder)
    assert info.value.problems == expected


@pytest.mark.parametrize(
    ("missing", "expected"),
    [("neglect", r"neglect\.yml: missing \(every category needs a lexicon\)")],
)
def test_lexicon_errors_require_all_names_missing_category(tmp_path, missing, expected):
    folder = _valid_folder_with(tmp_path, [])
    (folder / f"{missing}.yml").unlink()
    with pytest.raises(LexiconError, match=expected) as info:
        load_lexicons(folder, require_all=True)
    assert len(info.value.problems) == 1


@pytest.mark.parametrize(
    ("directory", "expected"),
    [("does_not_exist", r"does_not_exist: lexicon folder not found"), ("empty", r"empty: no lexicon files")],
)
def test_lexicon_errors_missing_or_empty_folder(tmp_path, directory, expected):
    if directory == "empty":
        (tmp_path / directory).mkdir()
    with pytest.raises(LexiconError, match=expected):
        load_lexicons(tmp_path / directory)


_MINIMAL_LEXICON = """\
category: {key}
version: "1.0.0"
sources:
  src: "Test source"
indicators:
  - id: {key}.sign
    description: A test sign
    weight: 0.5
    source: src
    phrases: [{key} test sign]
"""

_MINIMAL_CONTEXT = """\
version: 1.0.0
sources:
  test: Test source
rules:
  - id: neg.no
    literal: "no"
    direction: forward
    attribute: negated
    source: test
"""


def _valid_folder_with(tmp_path: Path, broken: list[tuple[str, str]]) -> Path:
    """A folder of twelve small valid lexicons and a valid context.yml, with some files
    replaced by broken ones (``(folder under lexicons_bad, file name)``). Built here
    rather than copied from the bundled lexicons so the expected output does not move
    while those are edited."""
    target = tmp_path / "lexicons"
    target.mkdir()
    for key in CATEGORY_KEYS:
        (target / f"{key}.yml").write_text(_MINIMAL_LEXICON.format(key=key), encoding="utf-8")
    (target / CONTEXT_FILE).write_text(_MINIMAL_CONTEXT, encoding="utf-8")
    for folder, name in broken:
        shutil.copy(BAD_LEXICONS / folder / name, target / name)
    return target


@pytest.mark.parametrize("broken", [[]], ids=["none"])
def test_lexicon_errors_cli_check_valid_folder_passes(tmp_path, broken):
    folder = _valid_folder_with(tmp_path, broken)
    result = CliRunner().invoke(main, ["lexicon", "check", "--dir", str(folder)])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("OK: 12 lexicons, 12 indicators (lex-")
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("broken", "problems"),
    [
        (
            [("weight_over_one", "neglect.yml")],
            [
                "neglect.yml: indicator 'neglect.no_food' (indicators[0]) field 'weight': "
                "Input should be less than or equal to 1",
            ],
        ),
        (
            [("several_problems", "cse.yml"), ("missing_description", "neglect.yml")],
            [
                "cse.yml: indicator 'cse.gifts' (indicators[0]) field 'weight': Input should be less than or equal to 1",
                "neglect.yml: indicator 'neglect.no_food' (indicators[0]) field 'description': Field required",
            ],
        ),
    ],
    ids=["one_file", "two_files"],
)
def test_lexicon_errors_cli_check_bad_dir(tmp_path, broken, problems):
    folder = _valid_folder_with(tmp_path, broken)
    result = CliRunner().invoke(main, ["lexicon", "check", "--dir", str(folder)])
    assert result.exit_code == 1
    assert result.stdout == ""
    expected = "".join(f"  {p}\n" for p in problems) + f"Error: {len(problems)} problem(s) in lexicon files\n"
    assert result.stderr == expected
    assert result.stderr.count("Error:") == 1


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "forward_missing_attribute.yml",
            r"forward_missing_attribute\.yml: rule 'neg\.never' \(rules\[1\]\) field '\(entry\)': "
            r"Value error, a forward rule needs an 'attribute'",
        ),
        (
            "literal_and_pattern.yml",
            r"literal_and_pattern\.yml: rule 'neg\.never' \(rules\[1\]\) field '\(entry\)': "
            r"Value error, give exactly one of 'literal' or 'pattern'",
        ),
        (
            "unknown_direction.yml",
            r"unknown_direction\.yml: rule 'neg\.never' \(rules\[1\]\) field 'direction': Input should be "
            r"'forward', 'backward', 'bidirectional', 'terminate' or 'pseudo'",
        ),
        (
            "max_scope_zero.yml",
            r"max_scope_zero\.yml: rule 'neg\.never' \(rules\[1\]\) field 'max_scope': "
            r"Input should be greater than or equal to 1",
        ),
    ],
)
def test_lexicon_errors_context_rules_name_rule_and_field(name, expected):
    with pytest.raises(LexiconError, match=expected) as info:
        load_context_rules(BAD_CONTEXT / name)
    assert len(info.value.problems) == 1


@pytest.mark.parametrize(("name", "expected"), [("absent.yml", r"absent\.yml: context rules file not found")])
def test_lexicon_errors_context_rules_missing_file(name, expected):
    with pytest.raises(LexiconError, match=expected):
        load_context_rules(BAD_CONTEXT / name)


@pytest.mark.parametrize(
    ("broken", "expected"),
    [("max_scope_zero.yml", "  context.yml: rule 'neg.never' (rules[1]) field 'max_scope': "
                            "Input should be greater than or equal to 1\n"
                            "Error: 1 problem(s) in lexicon files\n")],
)
def test_lexicon_errors_cli_check_bad_context(tmp_path, broken, expected):
    folder = _valid_folder_with(tmp_path, [])
    shutil.copy(BAD_CONTEXT / broken, folder / CONTEXT_FILE)
    result = CliRunner().invoke(main, ["lexicon", "check", "--dir", str(folder)])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == expected
