"""Core commands: check, lexicon check. (``scan`` lives in :mod:`flagger.cli.batch`.)"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..errors import FlaggerError, LexiconError


def _fail(exc: Exception) -> "click.ClickException":
    return click.ClickException(getattr(exc, "message", str(exc)))


def _make_flagger(model: str | None):
    from ..engine import Flagger

    try:
        return Flagger(model=model)
    except FlaggerError as exc:
        raise _fail(exc) from None


_COLOURS = ["red", "yellow", "magenta", "cyan", "blue", "green"]


def render_highlights(text: str, result, *, colour: bool) -> str:
    """The note with each concern's evidence marked ``[[words]]{category}``."""
    marks = []
    for c in result.concerns:
        for e in c.evidence:
            marks.append((e.start, e.end, c.category))
    marks.sort()
    out, pos = [], 0
    cats = sorted({m[2] for m in marks})
    for s, e, cat in marks:
        if s < pos:
            continue
        out.append(text[pos:s])
        frag = f"[[{text[s:e]}]]{{{cat}}}"
        if colour:
            frag = click.style(frag, fg=_COLOURS[cats.index(cat) % len(_COLOURS)], bold=True)
        out.append(frag)
        pos = e
    out.append(text[pos:])
    return "".join(out)


@click.command("check")
@click.argument("text")
@click.option("--model", type=click.Choice(["tfidf", "minilm", "none"]), default=None)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON instead.")
def check_cmd(text: str, model: str | None, as_json: bool) -> None:
    """Scan one note given on the command line and show its highlights."""
    flagger = _make_flagger(model)
    result = flagger.scan(text, id="check")
    if as_json:
        click.echo(result.model_dump_json(indent=2))
        return
    if result.status == "error":
        raise click.ClickException(result.error.reason)
    click.echo(render_highlights(text, result, colour=sys.stdout.isatty()))
    click.echo()
    if not result.concerns:
        click.echo("No concerns suggested.")
    for c in result.concerns:
        click.echo(f"- {c.category} ({c.level}, score {c.score:.2f}): {c.why}")
    for e in result.suppressed:
        why = ", ".join(f"{f.attribute} by '{f.trigger}'" for f in e.context) or "too weak on its own"
        click.echo(f"  set aside: '{e.text}' ({e.category}) - {why}")
    click.echo("\nSuggestions only: a DSL decides. flagger never refers.")


@click.group("lexicon")
def lexicon_group() -> None:
    """Work with the lexicon files."""


@lexicon_group.command("check")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Lexicon folder (default: the bundled lexicons).")
def lexicon_check(directory: Path | None) -> None:
    """Validate every lexicon file and the context rules; list every problem."""
    from ..context import load_context_rules
    from ..lexicon import CONTEXT_FILE, load_lexicons

    problems: list[str] = []
    lex = None
    try:
        lex = load_lexicons(directory, require_all=True)
    except LexiconError as exc:
        problems.extend(exc.problems)
    try:
        rules = load_context_rules(directory / CONTEXT_FILE if directory else None)
    except LexiconError as exc:
        problems.extend(exc.problems)
        rules = None
    if problems:
        for p in problems:
            click.echo(f"  {p}", err=True)
        raise click.ClickException(f"{len(problems)} problem(s) in lexicon files")
    n = sum(len(l.indicators) for l in lex.lexicons.values())
    click.echo(f"OK: {len(lex.lexicons)} lexicons, {n} indicators ({lex.version}); "
               f"{len(rules.rules)} context rules (v{rules.version}).")
    for key, l in sorted(lex.lexicons.items()):
        click.echo(f"  {l.path}: v{l.version}, {len(l.indicators)} indicators")

