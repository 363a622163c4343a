"""Service settings from the environment (prefix UPSHIFT_); built once in create_app or the CLI."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import AwareDatetime, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceMisconfigured(ValueError):
    """The settings cannot run the service as asked; the message says what to set."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="UPSHIFT_", extra="ignore")

    database_url: str = Field(
        default="sqlite:///./var/upshift.db",
        description="SQLAlchemy URL; SQLite (embedded default) or postgresql+psycopg://…",
    )
    catalog_path: Path = Field(
        default=Path("pricing_catalog"),
        description=(
            "The catalog: a directory of versions (one YAML file each) or one file; validated at "
            "start, the service refuses a bad one"
        ),
    )
    catalog_poll_s: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="How often each replica looks for catalog versions published into the "
        "database (`upshift catalog publish`); on PostgreSQL a notification brings them at once "
        "and this poll is the safety net. A version must be published at least three polls (and "
        "a minute) before its effective_from",
    )
    billing_backend: Literal["local", "stripe"] = Field(
        default="local",
        description="local: subscriptions, invoices and payments in Upshift's own database; "
        "stripe: subscriptions live in Stripe",
    )
    stripe_secret_key: SecretStr | None = Field(
        default=None,
        description="Stripe mode: an sk_… or restricted rk_… key; the service refuses to start "
        "without it",
    )
    stripe_webhook_secret: SecretStr | None = Field(
        default=None, description="Stripe mode: the webhook endpoint's signing secret, whsec_…"
    )
    stripe_api_base: str | None = Field(
        default=None, description="Override of Stripe's API address (the test double)"
    )
    token_secret: SecretStr | None = Field(
        default=None,
        description="Signs offer and session tokens; required outside the embedded SQLite "
        "default (replicas must share it); a random one per process there when unset",
    )
    local_decline_accounts: list[str] = Field(
        default_factory=list,
        description="Local billing only: accounts whose payments are declined (tests, demo)",
    )
    db_pool_size: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="PostgreSQL connections each process keeps open (its pool)",
    )
    db_max_overflow: int = Field(
        default=20,
        ge=0,
        le=1000,
        description="Connections a process may open above the pool under load, closed again "
        "when returned to a full pool",
    )
    offers_cache_ttl_s: float = Field(
        default=30.0,
        ge=0,
        description="How long offer inputs stay cached in-process; 0 turns the cache off. "
        "This process's own changes drop entries at once; the upgrade re-checks everything.",
    )
    otel_enabled: bool = Field(
        default=False,
        description="FastAPI's native OpenTelemetry (traces, metrics and logs through the "
        "global providers). Off by default: /metrics serves Prometheus, and with it on FastAPI "
        "asks the providers on every request, which costs the offers page load a third of its "
        "throughput",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Origins whose pages may call the API from the browser (the widget or the "
        'pricing table embedded in the product): a JSON list, e.g. ["https://app.example.com"]. '
        "None by default",
    )
    seed_demo: bool = Field(default=False, description="Create the demo account and print a key")
    now: AwareDatetime | None = Field(
        default=None,
        description="Stop the service's clock at this instant (ISO 8601 with an offset, e.g. "
        "2026-11-10T12:00:00Z): for tests and replays of a past day. Unset: the system clock",
    )
    log_level: str = Field(default="INFO", description="Python logging level of the service")
    signal_webhook_urls: list[str] = Field(
        default_factory=list,
        description='Endpoints that receive expansion signals (JSON list: ["https://…"])',
    )
    signal_webhook_secret: SecretStr | None = Field(
        default=None, description="Signs signal deliveries (HMAC-SHA256); required with URLs"
    )
    signal_webhook_timeout_s: float = Field(
        default=5.0, gt=0, le=120, description="Timeout of one signal delivery, in seconds"
    )
    signal_retry_base_s: float = Field(
        default=5.0, gt=0, description="First retry delay; doubles per attempt"
    )
    signal_retry_max_s: float = Field(default=3600.0, gt=0, description="Longest retry delay")
    renewal_poll_s: float = Field(
        default=5.0,
        gt=0,
        description="Local billing: how often each replica's worker renews the accounts whose "
        "period has ended (and applies their scheduled changes)",
    )
    signal_delivery_poll_s: float = Field(
        default=2.0, gt=0, description="How often the in-app worker looks at the outbox"
    )

    @field_validator("now")
    @classmethod
    def _now_in_utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else value.astimezone(UTC)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
