"""Configuration: one pydantic-settings class, built lazily by ``get_settings()``.

Values come from ``FLAGGER_*`` environment variables, then an optional config file
named by ``FLAGGER_CONFIG`` (a ``.env``-style file), then the defaults below.
Tests override with ``get_settings.cache_clear()`` and monkeypatched env vars.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLAGGER_", extra="ignore")

    # --- scanning ---
    lexicon_dir: str | None = Field(None, description="Folder of lexicon YAML files; default: bundled.")
    context_rules: str | None = Field(None, description="Context rules file; default: bundled.")
    model: Literal["tfidf", "minilm", "none"] = Field(
        "tfidf", description="Classifier fused with the lexicons: tfidf (default, fast), minilm, or none."
    )
    models_dir: str | None = Field(None, description="Folder of model artefacts; default: bundled.")
    max_note_chars: int = Field(100_000, ge=1_000, le=2_000_000, description="Longer notes are refused.")

    # --- review store ---
    database_url: str = Field("sqlite:///flagger.db", description="Review store URL (SQLite or PostgreSQL).")

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, v: str) -> str:
        if not v.startswith(("sqlite", "postgresql")):
            raise ValueError("database_url must be a sqlite:// or postgresql:// URL")
        return v


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached). Reads ``FLAGGER_CONFIG`` as an env file."""
    env_file = os.environ.get("FLAGGER_CONFIG")
    return Settings(_env_file=env_file) if env_file else Settings()
