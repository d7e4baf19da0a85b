"""Configuration: one pydantic-settings class, built lazily by ``get_settings()``.

Values come from ``FLAGGER_*`` environment variables, then an optional config file
named by ``FLAGGER_CONFIG`` (a ``.env``-style file), then the defaults below.
Tests override with ``get_settings.cache_clear()`` and monkeypatched env vars.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator, model_validator
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

    # --- review workspace (issue #7: api/review/, `flagger users/purge/audit`) ---
    review_cookie_secure: bool = Field(
        False, description="Mark the review session cookie Secure (set true whenever served over HTTPS)."
    )
    review_cookie_samesite: Literal["lax", "strict"] = Field(
        "strict", description="SameSite for the review session cookie (never 'none')."
    )
    review_session_hours: int = Field(12, ge=1, le=168, description="A review session lasts this long.")
    review_second_review_high_reject: bool = Field(
        False, description="Rejecting a high-level suggestion needs a second reviewer's sign-off."
    )
    review_local_procedure: str = Field(
        "If a child is in immediate danger, call 999. Otherwise follow your local safeguarding "
        "procedure and contact your Designated Safeguarding Lead or the local MASH.",
        min_length=10, max_length=2000,
        description="Local procedure text shown on every review page (who to call, how to refer).",
    )
    review_team_hidden_categories: dict[str, list[str]] = Field(
        default_factory=dict,
        description='Categories each team may not see, e.g. {"youth": ["cse"]}; added to each user\'s own list.',
    )

    @field_validator("review_team_hidden_categories")
    @classmethod
    def _known_hidden(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        from .categories import CATEGORY_KEYS

        for team, cats in v.items():
            bad = [c for c in cats if c not in CATEGORY_KEYS]
            if bad:
                raise ValueError(f"team {team!r}: unknown categories {', '.join(bad)}")
        return v
    # --- end review workspace ---

    # --- HTTP service (issue #6: api/, `flagger serve`) ---
    host: str = Field("127.0.0.1", description="Address `flagger serve` binds to (loopback by default).")
    port: int = Field(8000, ge=1, le=65535, description="Port `flagger serve` listens on.")
    workers: int = Field(1, ge=1, le=64, description="Worker processes; each loads its own Flagger once.")
    api_max_batch: int = Field(100, gt=0, le=10_000, description="Most notes in one POST /v1/scan (else 413).")
    api_max_body_bytes: int = Field(
        5_000_000, gt=0, le=200_000_000,
        description="Largest request body in bytes, checked before parsing (else 413).",
    )
    rate_limit_per_minute: int = Field(600, gt=0, description="Sustained requests per minute per API key.")
    rate_limit_burst: int = Field(60, gt=0, description="Requests a key may make at once before throttling.")
    api_key_cache_seconds: float = Field(
        5.0, ge=0, le=300,
        description="How long a verified key is trusted without asking the store; revocation takes effect "
                    "within this time in other workers (0: check the store on every request).",
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS; empty (default) turns CORS off."
    )
    cors_allow_credentials: bool = Field(False, description="Allow credentials on CORS requests.")
    graceful_shutdown_seconds: int = Field(
        15, ge=1, le=600, description="How long `flagger serve` waits for requests in flight on shutdown."
    )

    @field_validator("cors_origins")
    @classmethod
    def _origins_are_urls(cls, v: list[str]) -> list[str]:
        for origin in v:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise ValueError(f"CORS origin {origin!r} must start with http:// or https:// (or be '*')")
        return v

    @model_validator(mode="after")
    def _safe_service(self) -> "Settings":
        # A wildcard origin with credentials lets any web page act with a user's credentials.
        if self.cors_allow_credentials and "*" in self.cors_origins:
            raise ValueError("cors_origins '*' cannot be used with cors_allow_credentials; list the origins")
        if self.api_max_body_bytes < 1_000:
            raise ValueError("api_max_body_bytes below 1000 would refuse every request")
        return self
    # --- end HTTP service ---


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached). Reads ``FLAGGER_CONFIG`` as an env file."""
    env_file = os.environ.get("FLAGGER_CONFIG")
    return Settings(_env_file=env_file) if env_file else Settings()
