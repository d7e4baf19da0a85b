"""The ``flagger`` command.

stdout carries only data (``flagger scan ... > out.jsonl`` stays clean); progress and
summaries go to stderr. Exit codes: 0 success, 1 a handled error (one ``Error:`` line),
2 misuse; ``scan`` also uses 3 for partial success (some records in error).
"""

from __future__ import annotations

import logging

import click

from .batch import scan_cmd  # issue #5
from .core import check_cmd, lexicon_group


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="flagger")
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages to stderr (never note text).")
def main(verbose: bool) -> None:
    """flagger: suggests safeguarding concerns in case notes for a DSL to review.

    It never refers, confirms or contacts anyone: every concern is a suggestion until a
    named person decides.
    """
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


main.add_command(scan_cmd)
main.add_command(check_cmd)
main.add_command(lexicon_group)
main.add_command(__import__("flagger.cli.models", fromlist=["x"]).evaluate_cmd)  # issue #4
main.add_command(__import__("flagger.cli.models", fromlist=["x"]).train_cmd)  # issue #4
main.add_command(__import__("flagger.cli.service", fromlist=["x"]).serve_cmd)  # issue #6
main.add_command(__import__("flagger.cli.service", fromlist=["x"]).keys_group)  # issue #6
main.add_command(__import__("flagger.cli.review", fromlist=["x"]).users_group)  # issue #7
main.add_command(__import__("flagger.cli.review", fromlist=["x"]).purge_cmd)  # issue #7
main.add_command(__import__("flagger.cli.review", fromlist=["x"]).audit_group)  # issue #7
main.add_command(__import__("flagger.cli.review", fromlist=["x"]).export_decisions_cmd)  # issue #7
