"""The one wiring place: settings, catalog, database, clock and routes come together here."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import Engine

from service.adapters.catalog_loader import load_catalog
from service.adapters.db import make_engine, make_session_factory
from service.api.metrics import MetricsMiddleware, RequestMetrics
from service.api.problems import install_problem_handlers
from service.api.routes import (
    accounts,
    catalog,
    health,
    ledger,
    offers,
    reports,
    signals,
    upgrades,
    usage,
    webhooks,
)
from service.ports import Clock, SystemClock
from service.services.tokens import TokenSigner
from service.settings import Settings

log = logging.getLogger("upshift")

API_VERSION = "0.1.0"


def create_app(
    settings: Settings | None = None, *, clock: Clock | None = None, engine: Engine | None = None
) -> FastAPI:
    """Build the service. A bad catalog raises CatalogError here: the service refuses to start.

    `engine` lets tests share one connection pool across many apps; it is then not disposed.
    """
    settings = settings or Settings()
    active_catalog = load_catalog(settings.catalog_path)
    if settings.token_secret is None:
        log.warning("UPSHIFT_TOKEN_SECRET is unset: tokens are signed with a per-process secret")
        settings = settings.model_copy(
            update={"token_secret": SecretStr(secrets.token_urlsafe(32))}
        )
    owns_engine = engine is None
    engine = engine or make_engine(settings.database_url)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if owns_engine:
            engine.dispose()

    app = FastAPI(
        title="Upshift",
        version=API_VERSION,
        description=(
            "Self-serve upgrades and pricing tiers: catalog, usage thresholds, upgrade offers "
            "with Stripe-exact proration, one-click upgrades and an expansion ledger. Errors are "
            "RFC 9457 application/problem+json with a stable `code`."
        ),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.catalog = active_catalog
    app.state.engine = engine
    app.state.session_factory = make_session_factory(engine)
    app.state.clock = clock or SystemClock()
    assert settings.token_secret is not None
    app.state.token_signer = TokenSigner(settings.token_secret.get_secret_value())
    app.state.metrics = RequestMetrics()
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    install_problem_handlers(app)
    for module in (
        health,
        catalog,
        accounts,
        usage,
        signals,
        offers,
        upgrades,
        webhooks,
        ledger,
        reports,
    ):
        app.include_router(module.router)
    return app
