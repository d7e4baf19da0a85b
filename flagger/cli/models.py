"""Model commands: evaluate (and train)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import FlaggerError
from .core import _fail


@click.command("evaluate")
@click.argument("gold", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--model", "models", multiple=True, type=click.Choice(["tfidf", "minilm"]),
              help="Classifier(s) to evaluate fused with the lexicons (default: tfidf).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the full report as JSON here.")
def evaluate_cmd(gold: Path, models: tuple[str, ...], json_out: Path | None) -> None:
    """Score flagger on GOLD.jsonl (id, text, labels, optional evidence) beside a
    keyword baseline and lexicons-only, so each layer's gain is visible."""
    from ..engine import Flagger
    from ..evaluate import evaluate, flagger_system, format_table, keyword_system, load_gold

    try:
        notes = load_gold(gold)
        systems = {"keyword baseline": keyword_system,
                   "lexicon+context": flagger_system(Flagger(model="none"))}
        for m in models or ("tfidf",):
            fl = Flagger(model=m)
            name = f"lexicon+context+{m}" if fl.classifier else f"{m} (not bundled: lexicons only)"
            systems[name] = flagger_system(fl)
        report = evaluate(notes, systems)
    except FlaggerError as exc:
        raise _fail(exc) from None
    click.echo(format_table(report))
    if json_out:
        json_out.write_text(json.dumps(report, indent=2))


@click.command("train")
@click.option("--corpus", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=Path("corpus/notes.jsonl"), show_default=True)
@click.option("--models-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("models"),
              show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--minilm/--no-minilm", default=False, help="Also train the MiniLM head (slower).")
def train_cmd(corpus: Path, models_dir: Path, seed: int, minilm: bool) -> None:
    """Train the classifiers on the corpus train split; choose thresholds on dev."""
    from ..train import train

    try:
        summary = train(corpus, models_dir, seed=seed, minilm=minilm)
    except FlaggerError as exc:
        raise _fail(exc) from None
    for name, m in summary["models"].items():
        if not m:
            continue
        click.echo(f"{name} {m['version']}", err=True)
        for cat, d in m["thresholds"].items():
            click.echo(f"  {cat:16} threshold {d['threshold']:.3f}  dev P {d['dev_precision']:.2f} "
                       f"R {d['dev_recall']:.2f}  clean-flag {d['dev_clean_flag_rate']:.2f}", err=True)
