"""Service settings from the environment (prefix UPSHIFT_); built once in create_app or the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="UPSHIFT_", extra="ignore")

    database_url: str = Field(
        default="sqlite:///./var/upshift.db",
        description="SQLAlchemy URL; SQLite (embedded default) or postgresql+psycopg://…",
    )
    catalog_path: Path = Path("pricing_catalog/catalog.yaml")
    billing_backend: Literal["local", "stripe"] = "local"
    stripe_secret_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None
    stripe_api_base: str | None = Field(
        default=None, description="Override of Stripe's API address (the test double)"
    )
    token_secret: SecretStr | None = Field(
        default=None,
        description="Signs offer and session tokens; a random one per process when unset",
    )
    seed_demo: bool = Field(default=False, description="Create the demo account and print a key")
    log_level: str = "INFO"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
