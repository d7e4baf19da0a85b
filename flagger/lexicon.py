"""Load and validate the indicator lexicons (``lexicons/<category>.yml``).

Each file is checked with pydantic and then against spaCy's Matcher. Every problem in
every file is collected first and raised once, as a :class:`LexiconError` whose
message names the file, the indicator and the field, so a DSL editing a file can fix
all of it in one go.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .categories import CATEGORIES
from .errors import LexiconError

CONTEXT_FILE = "context.yml"
# libyaml's C loader when PyYAML was built with it: the pure-Python loader took ~10 s
# to read the lexicons, most of the start-up time of every worker.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str):
    """Parse YAML safely (no arbitrary objects), with the C loader when available."""
    return yaml.load(text, Loader=_YAML_LOADER)  # noqa: S506 - a SafeLoader
_ID_RE = re.compile(r"^[a-z_]+\.[a-z0-9_]+$")


class IndicatorModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    description: str = Field(min_length=3)
    weight: float = Field(gt=0, le=1)
    source: str
    phrases: list[str] = Field(default_factory=list)
    patterns: list[list[dict[str, Any]]] = Field(default_factory=list)
    examples: list[str] = Field(default_factory=list)

    @field_validator("id")
    @classmethod
    def _id_shape(cls, v: str) -> str:
        if not _ID_RE.match(v):
            raise ValueError("must look like '<category>.<snake_case_name>'")
        return v

    @field_validator("phrases")
    @classmethod
    def _phrases_not_blank(cls, v: list[str]) -> list[str]:
        for i, p in enumerate(v):
            if not str(p).strip():
                raise ValueError(f"phrase {i} is blank")
        return [str(p) for p in v]

    @model_validator(mode="after")
    def _has_something_to_match(self) -> "IndicatorModel":
        if not self.phrases and not self.patterns:
            raise ValueError("needs at least one phrase or pattern")
        return self


class LexiconFileModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    category: str
    version: str = Field(pattern=r"^\d+\.\d+\.\d+$")
    description: str | None = None
    sources: dict[str, str] = Field(min_length=1)
    indicators: list[IndicatorModel] = Field(min_length=1)


@dataclass(frozen=True)
class Indicator:
    id: str
    category: str
    description: str
    weight: float
    source: str
    phrases: tuple[str, ...]
    patterns: tuple[tuple[dict[str, Any], ...], ...]
    examples: tuple[str, ...]


@dataclass(frozen=True)
class Lexicon:
    category: str
    version: str
    path: str
    sources: dict[str, str]
    indicators: tuple[Indicator, ...]


@dataclass(frozen=True)
class LexiconSet:
    """All category lexicons, with a combined version for results."""

    lexicons: dict[str, Lexicon]
    version: str

    def indicators(self) -> Iterable[Indicator]:
        for lex in self.lexicons.values():
            yield from lex.indicators

    def indicator(self, indicator_id: str) -> Indicator:
        return self._by_id[indicator_id]

    @property
    def _by_id(self) -> dict[str, Indicator]:
        cache = self.__dict__.get("_cache")
        if cache is None:
            cache = {i.id: i for i in self.indicators()}
            object.__setattr__(self, "_cache", cache)
        return cache


def default_lexicon_dir() -> Path:
    """The bundled lexicon folder (installed as the data package ``flagger.lexicons``)."""
    return Path(str(resources.files("flagger.lexicons")))


def _loc(loc: tuple[Any, ...], data: Any) -> str:
    """Describe a pydantic error location by indicator id where there is one."""
    if len(loc) >= 2 and loc[0] == "indicators" and isinstance(loc[1], int):
        idx = loc[1]
        ind_id = None
        try:
            ind_id = data["indicators"][idx].get("id")
        except (KeyError, IndexError, TypeError, AttributeError):
            pass
        who = f"indicator {ind_id!r} (indicators[{idx}])" if ind_id else f"indicators[{idx}]"
        field = ".".join(str(p) for p in loc[2:]) or "(entry)"
        return f"{who} field '{field}'"
    return "field '" + ".".join(str(p) for p in loc) + "'"


@lru_cache(maxsize=1)
def _check_vocab():
    from spacy.lang.en import English

    return English().vocab


def _check_patterns(ind: IndicatorModel, where: str) -> list[str]:
    """Compile each token pattern in a throwaway Matcher to catch spaCy's own errors."""
    from spacy.matcher import Matcher

    problems = []
    # One shared vocab: building English() per indicator made start-up take minutes.
    matcher = Matcher(_check_vocab(), validate=True)
    for i, pattern in enumerate(ind.patterns):
        try:
            matcher.add(f"p{i}", [pattern])
        except (ValueError, KeyError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0][:200]
            problems.append(f"{where} indicator {ind.id!r} field 'patterns[{i}]': {first}")
    return problems


def load_lexicon_file(path: Path) -> tuple[Lexicon | None, list[str]]:
    """Parse and validate one lexicon file. Returns the lexicon (or None) and problems."""
    name = path.name
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return None, [f"{name}: not valid YAML{at}: {getattr(exc, 'problem', exc)}"]
    except (OSError, UnicodeDecodeError) as exc:
        return None, [f"{name}: cannot be read: {exc.__class__.__name__}"]
    if not isinstance(data, dict):
        return None, [f"{name}: expected a mapping with category, version, sources, indicators"]
    try:
        model = LexiconFileModel.model_validate(data)
    except ValidationError as exc:
        return None, [f"{name}: {_loc(e['loc'], data)}: {e['msg']}" for e in exc.errors()]

    problems: list[str] = []
    if model.category not in CATEGORIES:
        problems.append(f"{name}: field 'category': unknown category {model.category!r}")
    if path.stem != model.category:
        problems.append(f"{name}: file name must be '{model.category}.yml' for its category")
    seen: set[str] = set()
    for idx, ind in enumerate(model.indicators):
        where = f"{name}:"
        if ind.id in seen:
            problems.append(f"{where} indicator {ind.id!r} (indicators[{idx}]) field 'id': duplicate id")
        seen.add(ind.id)
        if ind.id.split(".", 1)[0] != model.category:
            problems.append(
                f"{where} indicator {ind.id!r} field 'id': must start with '{model.category}.'"
            )
        if ind.source not in model.sources:
            problems.append(
                f"{where} indicator {ind.id!r} field 'source': {ind.source!r} is not a key of 'sources'"
            )
        problems.extend(_check_patterns(ind, where))
    if problems:
        return None, problems
    lex = Lexicon(
        category=model.category,
        version=model.version,
        path=name,
        sources=dict(model.sources),
        indicators=tuple(
            Indicator(
                id=i.id,
                category=model.category,
                description=i.description,
                weight=i.weight,
                source=i.source,
                phrases=tuple(i.phrases),
                patterns=tuple(tuple(p) for p in i.patterns),
                examples=tuple(i.examples),
            )
            for i in model.indicators
        ),
    )
    return lex, []


def load_lexicons(directory: Path | str | None = None, *, require_all: bool = False) -> LexiconSet:
    """Load every ``<category>.yml`` in ``directory`` (default: the bundled lexicons).

    Args:
        directory: folder holding the YAML files.
        require_all: also fail when a category has no lexicon file.

    Returns:
        A :class:`LexiconSet`.

    Raises:
        LexiconError: listing every problem found, by file, indicator and field.
    """
    folder = Path(directory) if directory is not None else default_lexicon_dir()
    if not folder.is_dir():
        raise LexiconError([f"{folder}: lexicon folder not found"])
    problems: list[str] = []
    lexicons: dict[str, Lexicon] = {}
    files = sorted(p for p in folder.glob("*.yml") if p.name != CONTEXT_FILE)
    for path in files:
        lex, errs = load_lexicon_file(path)
        problems.extend(errs)
        if lex is not None:
            if lex.category in lexicons:
                problems.append(f"{path.name}: category {lex.category!r} defined twice")
            lexicons[lex.category] = lex
    if require_all:
        for key in CATEGORIES:
            if key not in lexicons and not any(p.startswith(f"{key}.yml") for p in problems):
                problems.append(f"{key}.yml: missing (every category needs a lexicon)")
    if not files:
        problems.append(f"{folder}: no lexicon files (*.yml) found")
    # Indicator ids are global: the review store and exports key on them.
    owners: dict[str, str] = {}
    for lex in lexicons.values():
        for ind in lex.indicators:
            if ind.id in owners:
                problems.append(f"{lex.path}: indicator {ind.id!r} field 'id': also in {owners[ind.id]}")
            owners[ind.id] = lex.path
    if problems:
        raise LexiconError(problems)
    digest = hashlib.sha256()
    for key in sorted(lexicons):
        digest.update(f"{key}={lexicons[key].version};".encode())
        digest.update((folder / lexicons[key].path).read_bytes())
    return LexiconSet(lexicons=lexicons, version=f"lex-{digest.hexdigest()[:12]}")
