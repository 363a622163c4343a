"""Every replica loads a catalog version published while it runs (issue 16, point 5): its watcher
(driven here through `run_once`, on PostgreSQL also woken by NOTIFY) swaps the served history, all
replicas switch at the version's effective_from, caches and Stripe's price map follow; a version
a replica cannot serve leaves the history it served."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import stripe
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import sessionmaker

from service.adapters.catalog_loader import (
    canonical_document,
    document_sha256,
    load_catalog,
    load_catalogs,
)
from service.adapters.catalog_store import insert_version
from service.adapters.db import make_session_factory, transaction
from service.adapters.stripe_api import StripeBilling, catalog_lines
from service.adapters.stripe_setup import StripeCatalogStore
from service.api.app import create_app
from service.domain.accounts import Plan, plan_lines
from service.domain.catalog import CatalogError, Interval
from service.services.catalog_publishing import withdraw_catalog
from service.services.catalogs import CatalogWatcher, ServedCatalogs
from service.services.stripe_sync import sync_stripe
from service.settings import Settings
from tests.conftest import CATALOG_PATH
from tests.fakes.clock import FakeClock
from tests.integration.test_catalog_publish import (
    LEAD,
    NEW,
    NEW_FILE,
    NEW_STARTS,
    OLD,
    publish_new,
)
from tests.ledger_fixtures import skip_unless_postgres
from tests.usage_fixtures import wait_for


@pytest.fixture
def quiet_settings(settings: Settings) -> Settings:
    """The watchers' threads wait an hour between polls: the tests drive `run_once`."""
    return settings.model_copy(update={"catalog_poll_s": 3600.0})


@pytest.fixture
def replicas(
    db: Engine, quiet_settings: Settings, clock: FakeClock
) -> Iterator[tuple[TestClient, TestClient]]:
    """Two apps on one database whose watchers look only when the test says so (`run_once`):
    their threads, and on PostgreSQL their listeners, are stopped."""
    apps = [create_app(quiet_settings, clock=clock, engine=db) for _ in range(2)]
    with TestClient(apps[0]) as a, TestClient(apps[1]) as b:
        for app in apps:
            if app.state.catalog_listener is not None:
                app.state.catalog_listener.stop()
            app.state.catalog_watcher.stop()
        yield a, b


def served(client: TestClient) -> tuple[str, list[str]]:
    body = client.get("/v1/catalog").json()
    return body["version"], [v["version"] for v in body["versions"]]


def growth_month_base(client: TestClient) -> int:
    tiers = {t["key"]: t for t in client.get("/v1/catalog").json()["tiers"]}
    return int(tiers["growth"]["prices"]["month"]["base"]["amount_minor"])


def test_every_replica_loads_a_published_version_and_all_switch_at_its_effective_from(
    replicas: tuple[TestClient, TestClient],
    db: Engine,
    clock: FakeClock,
    admin_headers: dict[str, str],
) -> None:
    a, b = replicas
    assert served(a) == served(b) == (OLD, [OLD])
    put = b.put(
        "/v1/accounts/acme",
        json={"tier": "growth", "interval": "month", "seats": 5},
        headers=admin_headers,
    )
    assert put.status_code == 201, put.text
    assert b.get("/v1/accounts/acme/upgrade-offers", headers=admin_headers).is_success
    assert b.app.state.offer_cache.get("acme", clock.now()) is not None

    publish_new(db)
    assert served(b) == (OLD, [OLD])  # not before its watcher looks
    for client in (a, b):
        assert client.app.state.catalog_watcher.run_once() is True
        assert client.app.state.catalog_watcher.run_once() is False  # nothing new the 2nd time
    # Loaded everywhere, in force nowhere yet: new business is priced at OLD until 1 December.
    assert served(a) == served(b) == (OLD, [OLD, NEW])
    assert growth_month_base(a) == growth_month_base(b) == 9900
    assert b.app.state.offer_cache.get("acme", clock.now()) is None  # caches follow the swap

    clock.set(NEW_STARTS - timedelta(seconds=1))
    assert served(a)[0] == served(b)[0] == OLD
    clock.set(NEW_STARTS)
    assert served(a)[0] == served(b)[0] == NEW
    assert growth_month_base(a) == growth_month_base(b) == 11900
    created = a.put(
        "/v1/accounts/newco",
        json={"tier": "growth", "interval": "month", "seats": 5},
        headers=admin_headers,
    )
    assert created.json()["catalog_version"] == NEW
    # acme keeps the version it bought (grandfathering), read by the other replica.
    assert b.get("/v1/accounts/acme", headers=admin_headers).json()["catalog_version"] == OLD
    # Offers cached before the switch are dropped at the watcher's next look.
    assert b.get("/v1/accounts/acme/upgrade-offers", headers=admin_headers).is_success
    clock.set(NEW_STARTS - timedelta(seconds=1))
    b.app.state.catalog_watcher.run_once()  # the watcher notes OLD in force again ...
    assert b.get("/v1/accounts/acme/upgrade-offers", headers=admin_headers).is_success
    clock.set(NEW_STARTS)
    assert b.app.state.catalog_watcher.run_once() is False  # ... then the switch
    assert b.app.state.offer_cache.get("acme", clock.now()) is None
    metrics = b.get("/metrics").text
    labels = f'effective_from="{NEW_STARTS.isoformat()}",in_force="true",version="{NEW}"'
    assert f"upshift_catalog_version{{{labels}}} 1.0" in metrics
    assert f'in_force="false",version="{OLD}"}} 1.0' in metrics


def test_a_replica_started_after_the_publication_serves_the_version_from_the_start(
    db: Engine, quiet_settings: Settings, clock: FakeClock
) -> None:
    publish_new(db)
    app = create_app(quiet_settings, clock=clock, engine=db)
    assert app.state.catalogs.history.names == (OLD, NEW)


def invalid_stored(db: Engine, version: str, document: dict[str, Any]) -> None:
    """A row no publish would write (another code version's, or edited by hand)."""
    with transaction(make_session_factory(db)) as session:
        insert_version(
            session,
            version=version,
            effective_from=datetime(2027, 1, 1, tzinfo=UTC),
            document=document,
            sha256=document_sha256(document),
            source="edited.yaml",
            published_at=datetime(2026, 11, 10, tzinfo=UTC),
        )


def test_a_stored_version_a_replica_cannot_serve_leaves_the_old_history_serving(
    replicas: tuple[TestClient, TestClient],
    db: Engine,
    quiet_settings: Settings,
    clock: FakeClock,
) -> None:
    a, _b = replicas
    watcher = a.app.state.catalog_watcher
    document = canonical_document(load_catalog(NEW_FILE))
    document["version"] = "2027-01-01.1"
    document["effective_from"] = "2027-01-01T00:00:00Z"
    document["tiers"]["growth"]["prices"]["month"]["base"]["lookup_key"] = "relay_growth_base_month"
    invalid_stored(db, "2027-01-01.1", document)  # an old lookup key for a new amount
    history = a.app.state.catalogs.history
    assert watcher.run_once() is False
    assert a.app.state.catalogs.history is history
    assert served(a) == (OLD, [OLD])
    assert (
        "published 2027-01-01.1 (edited.yaml): tiers.growth.prices.month.base.lookup_key"
        in (watcher.refused["2027-01-01.1"])
    )
    assert "upshift_catalog_refused_versions 1.0" in a.get("/metrics").text
    # A good version stored after it is still loaded; the bad one stays out.
    with transaction(make_session_factory(db)) as session:
        good = load_catalog(NEW_FILE)
        insert_version(
            session,
            version=NEW,
            effective_from=NEW_STARTS,
            document=canonical_document(good),
            sha256=document_sha256(canonical_document(good)),
            source=NEW_FILE.name,
            published_at=datetime(2026, 11, 10, 12, tzinfo=UTC),
        )
    assert watcher.run_once() is True
    assert served(a) == (OLD, [OLD, NEW])
    # A replica starting now refuses to start, naming the bad row, as it would a bad file.
    with pytest.raises(CatalogError, match=r"published 2027-01-01\.1 \(edited\.yaml\)"):
        create_app(quiet_settings, clock=clock, engine=db)


def test_a_document_that_does_not_parse_is_refused_too(
    replicas: tuple[TestClient, TestClient], db: Engine
) -> None:
    a, _b = replicas
    invalid_stored(db, "2027-01-01.1", {"version": "2027-01-01.1", "tiers": 3})
    assert a.app.state.catalog_watcher.run_once() is False
    assert served(a) == (OLD, [OLD])
    assert (
        "published 2027-01-01.1 (edited.yaml): effective_from: Field required"
        in (a.app.state.catalog_watcher.refused["2027-01-01.1"])
    )


def test_the_notification_wakes_every_replica_at_once(
    db: Engine, quiet_settings: Settings, clock: FakeClock
) -> None:
    """PostgreSQL: published and committed, the version reaches each replica's watcher through
    NOTIFY, long before its hour-long poll."""
    skip_unless_postgres(db)
    apps = [create_app(quiet_settings, clock=clock, engine=db) for _ in range(2)]
    with TestClient(apps[0]), TestClient(apps[1]):
        for app in apps:
            wait_for(app.state.catalog_listener.listening.is_set, "the listener is connected")
        publish_new(db)
        for app in apps:
            wait_for(lambda app=app: app.state.catalogs.history.names == (OLD, NEW), "loaded")


# --- Stripe mode ----------------------------------------------------------------------------


def test_stripe_learns_the_lookup_keys_of_a_version_published_while_it_runs() -> None:
    files = load_catalogs(CATALOG_PATH)
    billing = StripeBilling(stripe.StripeClient("sk_test_unused"), files.latest, None)
    assert "relay_growth_base_month_2026_12" not in billing.prices.lines
    grown = files.with_version(load_catalog(NEW_FILE))
    billing.use_history(grown)
    assert billing.prices.lines == catalog_lines(grown.latest)
    line = billing.prices.lines["relay_growth_base_month_2026_12"]
    assert (line.owner, line.versions) == ("growth", (NEW,))
    assert billing.prices.lines["relay_growth_seat_month"].versions == (OLD, NEW)
    # The process's catalog is the same version as before, now able to price the new one.
    assert billing.catalog.version == OLD
    assert billing.catalog.at_version(NEW).tiers["growth"].prices


def test_a_stripe_mode_replica_reads_subscriptions_at_a_version_published_while_it_runs(
    stripe_app: Any, db: Engine, world: Any
) -> None:
    """The fake Stripe sells the new version's price (sync-stripe after publishing); a
    subscription at it maps to a plan of that version once the watcher swapped the history."""
    grown = load_catalogs(CATALOG_PATH).with_version(load_catalog(NEW_FILE))
    sync_stripe(StripeCatalogStore(world.sdk), grown.latest, apply=True)
    customer = world.sdk.v1.customers.create(params={"name": "newco"})
    items = [
        {"price": world.price_id(line.lookup_key), "quantity": line.quantity}
        for line in plan_lines(grown.latest, Plan("growth", Interval.month, 5, version=NEW))
    ]
    sub = world.sdk.v1.subscriptions.create(params={"customer": customer.id, "items": items})
    billing = stripe_app.state.stripe
    assert billing.subscription(sub.id).plan is None  # a price this process does not know yet

    publish_new(db)
    assert stripe_app.state.catalog_watcher.run_once() is True
    assert billing.prices.lines == catalog_lines(grown.latest)
    plan = billing.subscription(sub.id).plan
    assert plan == Plan("growth", Interval.month, 5, version=NEW)


def test_every_replica_stops_serving_a_withdrawn_version(
    replicas: tuple[TestClient, TestClient], db: Engine, clock: FakeClock
) -> None:
    a, b = replicas
    publish_new(db)
    for client in (a, b):
        assert client.app.state.catalog_watcher.run_once() is True
    assert served(a) == served(b) == (OLD, [OLD, NEW])
    withdraw_catalog(make_session_factory(db), NEW, clock.now(), lead=LEAD)
    for client in (a, b):
        assert client.app.state.catalog_watcher.run_once() is True
    assert served(a) == served(b) == (OLD, [OLD])
    clock.set(NEW_STARTS)
    assert served(a) == served(b) == (OLD, [OLD])  # 1 December comes: nothing switches


def test_the_switch_at_an_effective_from_is_noticed_while_the_database_is_out_of_reach() -> None:
    """The published versions cannot be read (here: no table at all), yet the version in force
    changes at its effective_from: the caches are dropped all the same."""
    clock = FakeClock()
    served = ServedCatalogs(load_catalogs(CATALOG_PATH).with_version(load_catalog(NEW_FILE)), clock)
    switched: list[str] = []
    factory = sessionmaker(create_engine("sqlite://"))
    watcher = CatalogWatcher(
        served, factory, 3600.0, on_switch=lambda catalog: switched.append(catalog.version)
    )
    clock.set(NEW_STARTS)
    with pytest.raises(OperationalError, match="no such table: catalog_versions"):
        watcher.run_once()
    assert switched == [NEW]
    with pytest.raises(OperationalError):
        watcher.run_once()
    assert switched == [NEW]  # once per switch
