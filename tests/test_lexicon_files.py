"""The bundled lexicons: they load, their ids are unique, every category has one, and
every ``examples`` sentence matches its own indicator through the real matcher.

A failing example here is a defect in that lexicon file (or in the matcher), not in
this test: the test id names the indicator to fix.
"""

from __future__ import annotations

from collections import Counter

import pytest
from click.testing import CliRunner

from flagger.categories import CATEGORY_KEYS
from flagger.cli import main
from flagger.context import load_context_rules
from flagger.engine import HITS_KEY, Flagger
from flagger.lexicon import load_lexicons
from flagger.pipeline import normalise

# Loaded at collection time so each indicator gets its own test id.
BUNDLED = load_lexicons(require_all=True)
INDICATORS = sorted(BUNDLED.indicators(), key=lambda i: i.id)


@pytest.fixture(scope="module")
def flagger() -> Flagger:
    return Flagger(model="none")


def _matched_ids(flagger: Flagger, text: str) -> set[str]:
    doc = flagger._matcher(flagger.nlp(normalise(text)))
    return {span.label_ for span in doc.spans[HITS_KEY]}


@pytest.mark.parametrize("require_all", [True, False])
def test_lexicon_files_bundled_validate(require_all):
    lexicons = load_lexicons(require_all=require_all)
    assert sorted(lexicons.lexicons) == sorted(CATEGORY_KEYS)
    assert lexicons.version.startswith("lex-")


@pytest.mark.parametrize("category", CATEGORY_KEYS)
def test_lexicon_files_every_category_has_a_lexicon(category):
    lex = BUNDLED.lexicons[category]
    assert lex.path == f"{category}.yml"
    assert lex.indicators, f"{lex.path} has no indicators"
    assert all(ind.category == category and ind.id.startswith(f"{category}.") for ind in lex.indicators)


@pytest.mark.parametrize("scope", ["all files"])
def test_lexicon_files_indicator_ids_unique(scope):
    counts = Counter(ind.id for ind in BUNDLED.indicators())
    assert [i for i, n in counts.items() if n > 1] == []


@pytest.mark.parametrize("indicator", INDICATORS, ids=[i.id for i in INDICATORS])
def test_lexicon_files_indicator_has_examples(indicator):
    assert indicator.examples, f"{indicator.id} has no examples to check it against"


@pytest.mark.parametrize("indicator", INDICATORS, ids=[i.id for i in INDICATORS])
def test_lexicon_files_examples_match_their_indicator(flagger, indicator):
    misses = [ex for ex in indicator.examples if indicator.id not in _matched_ids(flagger, ex)]
    assert misses == [], f"{indicator.id}: examples that do not match it: {misses}"


@pytest.mark.parametrize("rules_path", [None])
def test_lexicon_files_bundled_context_rules_validate(rules_path):
    rules = load_context_rules(rules_path)
    assert rules.rules
    assert len({r.id for r in rules.rules}) == len(rules.rules)
    assert {r.direction for r in rules.rules} == {"forward", "backward", "bidirectional", "terminate", "pseudo"}


@pytest.mark.parametrize("args", [["lexicon", "check"]])
def test_lexicon_files_cli_check_lists_twelve_files(args):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    n_ind = sum(len(lex.indicators) for lex in BUNDLED.lexicons.values())
    rules = load_context_rules()
    assert lines[0] == (
        f"OK: 12 lexicons, {n_ind} indicators ({BUNDLED.version}); "
        f"{len(rules.rules)} context rules (v{rules.version})."
    )
    expected = [
        f"  {key}.yml: v{BUNDLED.lexicons[key].version}, {len(BUNDLED.lexicons[key].indicators)} indicators"
        for key in sorted(CATEGORY_KEYS)
    ]
    assert lines[1:] == expected
