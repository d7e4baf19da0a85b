"""Review-store commands: users, purge, audit export, export-decisions.

stdout carries only data; summaries go to stderr. Passwords are read from a hidden
prompt or from stdin (``--password-stdin``), never from an argument, and never echoed.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import click

from ..errors import FlaggerError


def _store(database_url: str | None):
    from ..settings import get_settings
    from ..store import ReviewStore

    try:
        return ReviewStore(database_url or get_settings().database_url)
    except FlaggerError as exc:
        raise click.ClickException(exc.message) from None


def _fail(exc: FlaggerError) -> click.ClickException:
    return click.ClickException(exc.message)


db_option = click.option("--db", "database_url", default=None, metavar="URL",
                         help="Review store URL (default: FLAGGER_DATABASE_URL or sqlite:///flagger.db).")


def _actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no login name in some containers
        return "cli"


# --- users -----------------------------------------------------------------------------

@click.group("users")
def users_group() -> None:
    """Manage named reviewer accounts."""


@users_group.command("create")
@click.argument("username")
@click.option("--name", "display_name", default=None, help="Display name shown on decisions (default: username).")
@click.option("--role", type=click.Choice(["reviewer", "admin"]), default="reviewer", show_default=True)
@click.option("--team", default=None, help="Team the user belongs to (team visibility rules apply).")
@click.option("--hide", "hidden", multiple=True, metavar="CATEGORY",
              help="A category this user may not see (repeatable), e.g. --hide cse.")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@db_option
def users_create(username: str, display_name: str | None, role: str, team: str | None, hidden: tuple[str, ...],
                 password_stdin: bool, database_url: str | None) -> None:
    """Create a reviewer account; asks for the password (hidden) unless --password-stdin."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    store = _store(database_url)
    try:
        uid = store.create_user(username, password, display_name=display_name, role=role, team=team,
                                hidden_categories=hidden, actor=_actor())
    except FlaggerError as exc:
        raise _fail(exc) from None
    click.echo(f"Created {role} {username!r} (id {uid}).", err=True)


@users_group.command("disable")
@click.argument("username")
@click.option("--enable", is_flag=True, help="Re-enable the account instead.")
@db_option
def users_disable(username: str, enable: bool, database_url: str | None) -> None:
    """Disable an account (its sessions end at once); decisions it made are kept."""
    try:
        _store(database_url).set_user_disabled(username, not enable, actor=_actor())
    except FlaggerError as exc:
        raise _fail(exc) from None
    click.echo(f"{'Enabled' if enable else 'Disabled'} {username!r}.", err=True)


@users_group.command("list")
@db_option
def users_list(database_url: str | None) -> None:
    """List accounts as JSON lines (no password hashes)."""
    for u in _store(database_url).list_users():
        click.echo(json.dumps({"id": u.id, "username": u.username, "name": u.display_name, "role": u.role,
                               "team": u.team, "hidden_categories": u.hidden_categories,
                               "disabled": u.disabled}))


# --- retention -------------------------------------------------------------------------

@click.command("purge")
@click.option("--older-than", "older_than", required=True, metavar="AGE",
              help="Purge text of notes whose every suggestion was decided longer ago than this (90d, 12w, 48h).")
@click.option("--dry-run", is_flag=True, help="Only count what would be purged.")
@db_option
def purge_cmd(older_than: str, dry_run: bool, database_url: str | None) -> None:
    """Remove note text of fully decided items, keeping the decisions (audited)."""
    from ..review import parse_duration

    try:
        age = parse_duration(older_than)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--older-than") from None
    try:
        ids = _store(database_url).purge(age, actor=_actor(), dry_run=dry_run)
    except FlaggerError as exc:
        raise _fail(exc) from None
    verb = "Would purge" if dry_run else "Purged"
    click.echo(f"{verb} the text of {len(ids)} note(s); their decisions are kept.", err=True)


# --- audit -------------------------------------------------------------------------------

@click.group("audit")
def audit_group() -> None:
    """Inspect the append-only audit log."""


@audit_group.command("export")
@click.option("--user", default=None, help="Only this username's events.")
@click.option("--case", "case_id", default=None, help="Only events about this case.")
@click.option("--since", default=None, metavar="DATE", help="Only events from this date or time (ISO 8601).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write JSONL here (default: stdout).")
@db_option
def audit_export(user: str | None, case_id: str | None, since: str | None, output: Path | None,
                 database_url: str | None) -> None:
    """Export audit events as JSONL, for inspections and subject-access requests."""
    when = None
    if since:
        try:
            when = datetime.fromisoformat(since)
        except ValueError:
            raise click.BadParameter(f"{since!r} is not an ISO date or time", param_hint="--since") from None
        when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    store = _store(database_url)
    out = open(output, "w", encoding="utf-8") if output else sys.stdout
    n = 0
    try:
        for ev in store.audit_events(user=user, case_id=case_id, since=when):
            out.write(json.dumps(ev, ensure_ascii=False) + "\n")
            n += 1
    except FlaggerError as exc:
        raise _fail(exc) from None
    finally:
        if output:
            out.close()
    click.echo(f"{n} audit event(s).", err=True)


# --- learning from decisions -----------------------------------------------------------------

@click.command("export-decisions")
@click.argument("output", metavar="OUT.jsonl", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--indicator-stats", "stats_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write per-indicator confirmations and rejection reasons here (JSON).")
@click.option("-q", "--quiet", is_flag=True, help="Do not print the indicator table.")
@db_option
def export_decisions_cmd(output: Path, stats_path: Path | None, quiet: bool, database_url: str | None) -> None:
    """Write decided notes as labelled JSONL (corpus format) and show noisy indicators.

    Only notes whose text is still held are written. The table (stdout) lists, per
    indicator, confirmations, rejections and the rejection reasons, noisiest first.
    """
    from ..review import format_indicator_table

    store = _store(database_url)
    n = 0
    with open(output, "w", encoding="utf-8") as fh:
        for rec in store.export_decisions():
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    stats = store.indicator_stats()
    if stats_path:
        stats_path.write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if not quiet:
        click.echo(format_indicator_table(stats))
    store.audit(actor=_actor(), action="export_decisions", object_type="export", object_id=str(output.name),
                details={"records": n})
    click.echo(f"Wrote {n} labelled note(s) to {output}.", err=True)
