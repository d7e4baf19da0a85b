"""Service commands: ``flagger serve`` and ``flagger keys``.

``serve`` hands uvicorn the import string ``api.app:app`` (a factory), so the library
never imports the web package; each worker builds its own app, Flagger and store
connection once at start-up.
"""

from __future__ import annotations

import os

import click
from pydantic import ValidationError

from ..errors import FlaggerError

# uvicorn's own access log is off (it would log paths with query strings); the
# service writes one JSON line per request on stdout through "flagger.access".
LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"format": "%(message)s"},
    },
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"},
        "access": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"},
    },
    "loggers": {
        "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
        "flagger": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "flagger.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
    },
}


def _settings_with(**overrides):
    """Settings from env/config file, with command-line values on top (validated)."""
    from ..settings import get_settings

    try:
        base = get_settings()
        values = base.model_dump()
        values.update({k: v for k, v in overrides.items() if v is not None})
        return type(base).model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        raise click.UsageError(f"invalid settings: {problems}") from None


@click.command("serve")
@click.option("--host", default=None, help="Address to bind (default: settings, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default: settings, 8000).")
@click.option("--workers", type=int, default=None, help="Worker processes (default: settings, 1).")
@click.option("--model", type=click.Choice(["tfidf", "minilm", "none"]), default=None,
              help="Classifier fused with the lexicons (default: settings).")
@click.option("--database-url", default=None, help="Review store URL (default: settings).")
def serve_cmd(host: str | None, port: int | None, workers: int | None, model: str | None,
              database_url: str | None) -> None:
    """Run the HTTP service (uvicorn). Configuration: FLAGGER_* environment variables,
    a config file named by FLAGGER_CONFIG, then these options. See docs/service.md.

    SIGTERM or Ctrl-C stops taking new requests and lets those in flight finish.
    """
    import uvicorn

    s = _settings_with(host=host, port=port, workers=workers, model=model, database_url=database_url)
    # Workers are separate processes that build their own settings: pass the overrides on.
    if model:
        os.environ["FLAGGER_MODEL"] = model
    if database_url:
        os.environ["FLAGGER_DATABASE_URL"] = database_url
    # With one worker uvicorn runs the app in this process, whose settings were cached
    # above before the overrides reached the environment.
    from ..settings import get_settings

    get_settings.cache_clear()
    # Migrate once here, not racing in every worker.
    from ..store import ReviewStore

    try:
        ReviewStore(s.database_url).engine.dispose()
    except FlaggerError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"flagger serve: http://{s.host}:{s.port} ({s.workers} worker(s), model {s.model}); "
               "suggestions only, no outbound calls.", err=True)
    metrics_dir = _multiprocess_metrics_dir(s.workers)
    try:
        uvicorn.run("api.app:app", factory=True, host=s.host, port=s.port, workers=s.workers,
                    access_log=False, log_config=LOG_CONFIG, proxy_headers=False, server_header=False,
                    timeout_graceful_shutdown=s.graceful_shutdown_seconds)
    finally:
        if metrics_dir is not None:
            metrics_dir.cleanup()


def _multiprocess_metrics_dir(workers: int):
    """With several workers, each is its own process with its own counters, so a scrape
    of /metrics would see whichever worker answered. prometheus_client's multiprocess
    mode shares them through files in PROMETHEUS_MULTIPROC_DIR, which must be set before
    the workers import it: a fresh temporary folder per run (removed at exit) unless the
    operator set one. Returns the TemporaryDirectory to clean up, or None."""
    import tempfile

    if workers <= 1 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None
    tmp = tempfile.TemporaryDirectory(prefix="flagger-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tmp.name
    return tmp


@click.group("keys")
@click.option("--database-url", default=None, help="Review store URL (default: settings).")
@click.pass_context
def keys_group(ctx: click.Context, database_url: str | None) -> None:
    """Manage API keys for the HTTP service (stored hashed in the review store)."""
    ctx.obj = _settings_with(database_url=database_url).database_url


def _store(url: str):
    from ..store import ReviewStore

    try:
        return ReviewStore(url)
    except FlaggerError as exc:
        raise click.ClickException(exc.message) from None


@keys_group.command("create")
@click.option("--name", required=True, help="Who or what uses the key (e.g. the case system).")
@click.option("--role", required=True, type=click.Choice(["scanner", "reviewer", "admin"]),
              help="scanner: scan and queue; reviewer: review items; admin: keys and everything.")
@click.pass_obj
def keys_create(url: str, name: str, role: str) -> None:
    """Create a key and print its token once (stdout); only its hash is stored."""
    try:
        key_id, token = _store(url).create_api_key(name, role, actor="cli")
    except FlaggerError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"Created key {key_id} ({role}) for {name!r}. The token is shown once; store it safely:", err=True)
    click.echo(token)


@keys_group.command("revoke")
@click.argument("key_id")
@click.pass_obj
def keys_revoke(url: str, key_id: str) -> None:
    """Revoke KEY_ID. Running services stop accepting it within api_key_cache_seconds."""
    try:
        _store(url).revoke_api_key(key_id, actor="cli")
    except FlaggerError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"Revoked key {key_id}.", err=True)


@keys_group.command("list")
@click.pass_obj
def keys_list(url: str) -> None:
    """List keys as tab-separated key_id, role, name, created, status (never secrets)."""
    for k in _store(url).list_api_keys():
        state = f"revoked {k.revoked_at:%Y-%m-%d}" if k.revoked_at else "active"
        click.echo(f"{k.key_id}\t{k.role}\t{k.name}\t{k.created_at:%Y-%m-%d}\t{state}")
