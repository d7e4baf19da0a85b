"""`flagger keys` and `flagger serve` (the command-line side of the HTTP service)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from flagger.cli import main


@pytest.fixture
def db_url(tmp_path, monkeypatch):
    from flagger.settings import get_settings

    url = f"sqlite:///{tmp_path / 'keys.db'}"
    monkeypatch.setenv("FLAGGER_DATABASE_URL", url)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def test_api_cli_keys_create_list_revoke(db_url):
    from flagger.store import ReviewStore

    runner = CliRunner()
    created = runner.invoke(main, ["keys", "create", "--name", "cms east", "--role", "scanner"])
    assert created.exit_code == 0, created.output
    token = created.stdout.strip()
    assert token.startswith("flg_") and "shown once" in created.stderr
    key = ReviewStore(db_url).verify_api_key(token)
    assert key is not None and key.role == "scanner"

    listed = runner.invoke(main, ["keys", "list"])
    assert listed.exit_code == 0
    [line] = listed.stdout.splitlines()
    key_id, role, name, _, state = line.split("\t")
    assert (key_id, role, name, state) == (key.key_id, "scanner", "cms east", "active")
    assert token.split("_", 2)[2] not in listed.stdout  # the secret is never listed

    assert runner.invoke(main, ["keys", "revoke", key_id]).exit_code == 0
    assert ReviewStore(db_url).verify_api_key(token) is None
    assert "revoked" in runner.invoke(main, ["keys", "list"]).stdout


@pytest.mark.parametrize("args,code,message", [
    (["keys", "create", "--name", "x", "--role", "root"], 2, "Invalid value for '--role'"),
    (["keys", "revoke", "nosuchkey"], 1, "no API key with id 'nosuchkey'"),
    (["serve", "--workers", "0"], 2, "workers: Input should be greater than or equal to 1"),
    (["serve", "--port", "0"], 2, "port: Input should be greater than or equal to 1"),
])
def test_api_cli_errors(db_url, args, code, message):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == code
    assert message in result.output


@pytest.mark.parametrize("command", [["serve"], ["keys"], ["keys", "create"], ["keys", "revoke"], ["keys", "list"]])
def test_api_cli_has_help(command):
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0 and len(result.output) > 80
