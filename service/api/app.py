"""The one wiring place: settings, catalog, database, clock and routes come together here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.telemetry import TelemetryConfig
from pydantic import SecretStr
from sqlalchemy import Engine
from starlette.datastructures import State

from service.adapters.billing_stripe import StripeBillingGateway
from service.adapters.catalog_loader import load_catalogs
from service.adapters.catalog_store import CATALOG_CHANNEL
from service.adapters.change_feed import ChangeListener, listen_dsn
from service.adapters.db import make_engine, make_session_factory
from service.adapters.offer_pages import PageReader
from service.adapters.stripe_api import StripeBilling, StripeNotConfigured, connect_stripe
from service.api.collector import freeze_survivors, tend_collector
from service.api.deps import single_valued_query
from service.api.docs import install_docs
from service.api.head import HeadAsGet
from service.api.metrics import MetricsMiddleware, RequestMetrics
from service.api.offer_page import OffersPage
from service.api.page_loads import PageLoadHotPath
from service.api.page_store import PageStore
from service.api.problems import install_problem_handlers
from service.api.routes import (
    accounts,
    catalog,
    entitlements,
    health,
    ledger,
    offers,
    pages,
    plan_options,
    reports,
    signals,
    upgrades,
    usage,
    webhooks,
)
from service.api.routes.entitlements import EntitlementsPage
from service.domain.catalog import Catalog, CatalogError, CatalogHistory
from service.ports import Clock, clock_at
from service.services.billing import GatewayFactory, local_gateways
from service.services.catalogs import CatalogWatcher, ServedCatalogs
from service.services.impressions import ImpressionBuffer
from service.services.offer_cache import AccountCaches, OfferPlanCache
from service.services.outbox import start_delivery_worker
from service.services.renewals import RenewalRound, RenewalWorker
from service.services.tokens import TokenSigner
from service.settings import ServiceMisconfigured, Settings

log = logging.getLogger("upshift")

API_VERSION = "0.1.0"


class ServiceState(State):
    """The app's state; `catalog` is the catalog version in force for new business at the
    clock's now (it changes at a version's effective_from, and when one is published)."""

    @property
    def catalog(self) -> Catalog:
        catalogs: ServedCatalogs = self.catalogs
        return catalogs.in_force()


def billing_gateways(
    settings: Settings, declining_accounts: set[str], stripe_billing: StripeBilling | None = None
) -> GatewayFactory:
    """The billing backend for a request's session: local (embedded) or Stripe."""
    if settings.billing_backend == "local":
        return local_gateways(declining_accounts)
    if stripe_billing is None:
        raise StripeNotConfigured("billing_backend=stripe needs the process's StripeBilling")
    return lambda _session: StripeBillingGateway(stripe_billing)


def telemetry_config(settings: Settings) -> TelemetryConfig:
    """FastAPI's native OpenTelemetry: on only when the settings ask for it (otel_enabled)."""
    enabled = settings.otel_enabled
    return {"tracing": enabled, "metrics": enabled, "logs": enabled}


def create_app(
    settings: Settings | None = None, *, clock: Clock | None = None, engine: Engine | None = None
) -> FastAPI:
    """Build the service. A bad catalog raises CatalogError here: the service refuses to start.

    `engine` lets tests share one connection pool across many apps; it is then not disposed.
    """
    settings = settings or Settings()
    history = load_catalogs(settings.catalog_path)
    clock = clock or clock_at(settings.now)
    # One StripeClient for the process (its HTTP sessions are per thread); fails without a key.
    stripe_billing = (
        connect_stripe(settings, history.in_force(clock.now()))
        if settings.billing_backend == "stripe"
        else None
    )
    if settings.token_secret is None:
        if not settings.is_sqlite:
            # Replicas share a database: a token signed by one must verify on the next.
            raise ServiceMisconfigured(
                "UPSHIFT_TOKEN_SECRET is unset: every replica must sign offer and session tokens "
                "with the same secret; set it (e.g. `python3 -c 'import secrets; "
                "print(secrets.token_urlsafe(32))'`)"
            )
        log.warning("UPSHIFT_TOKEN_SECRET is unset: tokens are signed with a per-process secret")
        settings = settings.model_copy(
            update={"token_secret": SecretStr(secrets.token_urlsafe(32))}
        )
    owns_engine = engine is None
    engine = engine or make_engine(
        settings.database_url,
        **(
            {}
            if settings.is_sqlite
            else {"pool_size": settings.db_pool_size, "max_overflow": settings.db_max_overflow}
        ),
    )
    session_factory = make_session_factory(engine)
    # The versions published into the database are served beside the files; one that cannot
    # be served stops the start, as a bad file does.
    catalogs = ServedCatalogs(history, clock)
    watcher = CatalogWatcher(catalogs, session_factory, settings.catalog_poll_s)
    try:
        watcher.load_at_start()
    except CatalogError:
        if owns_engine:
            engine.dispose()
        raise
    if stripe_billing is not None:  # the published versions' prices too
        stripe_billing.use_history(catalogs.history, catalogs.in_force().version)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # -- signal delivery (usage area): a worker only when signal webhook URLs are set --
        signal_worker = start_delivery_worker(
            _app.state.session_factory, settings, _app.state.clock
        )
        # -- end signal delivery --
        # -- offer caches of other replicas: dropped by the changes they commit (PostgreSQL) --
        changes = None
        if engine.dialect.name == "postgresql":
            caches = _app.state.account_caches
            changes = ChangeListener(listen_dsn(engine), caches.invalidate, caches.clear).start()
        _app.state.change_listener = changes
        # -- catalog versions published while the service runs: notified, and polled --
        catalog_listener = None
        if engine.dialect.name == "postgresql":
            catalog_listener = ChangeListener(
                listen_dsn(engine), watcher.wake, watcher.wake, channel=CATALOG_CHANNEL
            ).start()
        _app.state.catalog_listener = catalog_listener
        watcher.start()
        # -- renewals (local billing): due accounts renewed on time, no request needed --
        renewals = None
        if settings.billing_backend == "local":
            state = _app.state

            def renewal_round(done: RenewalRound, lag_s: float) -> None:
                state.account_caches.invalidate(done.changed)
                state.metrics.renewals.inc(done.renewals)
                state.metrics.renewal_lag.set(lag_s)

            renewals = RenewalWorker(
                state.session_factory,
                state.catalogs.in_force,
                state.billing_gateways,
                state.clock,
                settings.renewal_poll_s,
                renewal_round,
            ).start()
        _app.state.renewal_worker = renewals
        _app.state.impressions.start()
        # Everything loaded at start-up lives as long as the process, and cached offer plans
        # for minutes: out of the collector's sight, full collections stay short (p99 stalls).
        freeze_survivors(full=True)
        collector = asyncio.create_task(tend_collector())
        yield
        collector.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await collector  # it restores the collector's thresholds
        _app.state.impressions.stop()
        if signal_worker is not None:
            signal_worker.stop()
        if changes is not None:
            changes.stop()
        watcher.stop()
        if catalog_listener is not None:
            catalog_listener.stop()
        if renewals is not None:
            renewals.stop()
        if _app.state.page_store.reader is not None:
            await _app.state.page_store.reader.close()
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
        dependencies=[Depends(single_valued_query)],
        docs_url=None,  # served from the installed package, not a CDN (see api.docs)
        redoc_url=None,
        telemetry=telemetry_config(settings),
    )
    app.state = ServiceState()
    app.state.settings = settings
    app.state.catalogs = catalogs
    app.state.catalog_watcher = watcher
    app.state.engine = engine
    app.state.session_factory = session_factory
    app.state.clock = clock
    assert settings.token_secret is not None
    app.state.token_signer = TokenSigner(settings.token_secret.get_secret_value())
    app.state.declining_accounts = set(settings.local_decline_accounts)
    app.state.stripe = stripe_billing
    app.state.billing_gateways = billing_gateways(
        settings, app.state.declining_accounts, stripe_billing
    )
    app.state.offer_cache = OfferPlanCache[OffersPage](settings.offers_cache_ttl_s)
    app.state.page_store = PageStore(
        session_factory,
        app.state.token_signer,
        catalogs,
        PageReader(listen_dsn(engine)) if engine.dialect.name == "postgresql" else None,
    )
    app.state.entitlement_cache = OfferPlanCache[EntitlementsPage](settings.offers_cache_ttl_s)
    app.state.account_caches = AccountCaches(app.state.offer_cache, app.state.entitlement_cache)
    app.state.impressions = ImpressionBuffer(app.state.session_factory)
    app.state.metrics = RequestMetrics()
    app.state.metrics.watch_catalogs(catalogs, watcher)
    app.state.metrics.watch_page_store(app.state.page_store)
    caches = app.state.account_caches

    def catalogs_swapped(served: CatalogHistory) -> None:
        # Cached plans hold the catalog objects of the history they were read with.
        caches.clear()
        app.state.page_store.build()  # the new build key, here rather than in a page load
        if stripe_billing is not None:
            stripe_billing.use_history(served)

    watcher.on_swap = catalogs_swapped
    watcher.on_switch = lambda _in_force: caches.clear()
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    # The frontend's page loads of cached accounts (see api.page_loads).
    app.add_middleware(PageLoadHotPath, state=app.state)
    # HEAD is answered as GET without the body (see api.head).
    app.add_middleware(HeadAsGet)
    if settings.cors_origins:
        # Outermost: a preflight is answered before anything else, and every answer (the page
        # loads' too) carries the allowed origin. Nothing is allowed unless configured.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "HEAD", "POST"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
            expose_headers=["Idempotent-Replayed", "Retry-After"],
            max_age=600,
        )
    install_problem_handlers(app)
    for module in (
        health,
        catalog,
        accounts,
        usage,
        signals,
        offers,
        plan_options,
        entitlements,
        upgrades,
        webhooks,
        ledger,
        reports,
        pages,
    ):
        app.include_router(module.router)
    app.mount("/static", pages.static_files(), name="static")
    install_docs(app)
    return app
