"""Publishing a catalog version (issue 16, point 5): `upshift catalog publish` checks a file as
`catalog validate` does and against every version served, stores it once (idempotent, versions
immutable), and every replica's watcher loads it without a restart; all switch at its
effective_from. A version a replica cannot serve leaves the served history as it was."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import stripe
import yaml
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from service.adapters.catalog_loader import (
    canonical_document,
    document_sha256,
    load_catalog,
    load_catalogs,
)
from service.adapters.catalog_store import StoredVersion, insert_version, stored_versions
from service.adapters.db import make_session_factory, transaction
from service.adapters.stripe_api import StripeBilling, catalog_lines
from service.adapters.stripe_setup import StripeCatalogStore
from service.api.app import create_app
from service.cli import main
from service.commands.common import served_catalogs
from service.domain.accounts import Plan, plan_lines
from service.domain.catalog import Catalog, CatalogError, Interval
from service.services.catalogs import publish_catalog, publish_lead
from service.services.stripe_sync import sync_stripe
from service.settings import Settings
from tests.conftest import CATALOG_PATH, REPO_ROOT
from tests.fakes.clock import FakeClock
from tests.ledger_fixtures import skip_unless_postgres
from tests.usage_fixtures import wait_for

OLD, NEW = "2026-11-01.1", "2026-12-01.1"  # catalog.yaml (served from files), the one published
NEW_FILE = REPO_ROOT / "pricing_catalog" / "catalog-2026-12-01.yaml"
NOW = "2026-11-10T12:00:00Z"  # the FakeClock's start: NEW takes effect three weeks later
NEW_STARTS = datetime(2026, 12, 1, tzinfo=UTC)
LEAD = publish_lead(10.0)


def document_of(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def stored(db: Engine) -> list[StoredVersion]:
    with Session(db) as session:
        return stored_versions(session)


@pytest.fixture
def publish(database_url: str, db: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """`upshift catalog publish ARGS` against the test database, files at catalog.yaml."""
    monkeypatch.setenv("UPSHIFT_DATABASE_URL", database_url)
    monkeypatch.setenv("UPSHIFT_CATALOG_PATH", str(CATALOG_PATH))
    monkeypatch.setenv("UPSHIFT_NOW", NOW)
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(main, ["catalog", "publish", *args])

    yield run


# --- the command ------------------------------------------------------------------------------


def test_a_valid_version_is_stored_once_with_its_canonical_document(
    publish: Any, db: Engine
) -> None:
    result = publish(str(NEW_FILE))
    assert result.exit_code == 0, result.output
    assert f"published version {NEW}" in result.output
    assert "2026-12-01T00:00:00+00:00" in result.output
    [row] = stored(db)
    catalog = load_catalog(NEW_FILE)
    assert (row.version, row.effective_from, row.source) == (NEW, NEW_STARTS, NEW_FILE.name)
    assert row.published_at == datetime(2026, 11, 10, 12, tzinfo=UTC)
    # What is stored is the validated catalog, every field explicit: it reads back the same.
    assert row.document == canonical_document(catalog)
    assert row.sha256 == document_sha256(row.document)
    assert Catalog.parse(row.document).tiers == catalog.tiers


def test_publishing_the_same_document_again_changes_nothing(
    publish: Any, db: Engine, tmp_path: Path
) -> None:
    assert publish(str(NEW_FILE)).exit_code == 0
    [first] = stored(db)
    # The same meaning in another layout (comments gone, keys reordered) is the same document.
    document = document_of(NEW_FILE)
    relaid = write(tmp_path / "same.yaml", dict(reversed(list(document.items()))))
    for path in (NEW_FILE, relaid):
        again = publish(str(path))
        assert again.exit_code == 0, again.output
        assert f"version {NEW} is published already, with this very document" in again.output
    assert stored(db) == [first]


def test_a_published_version_is_immutable(publish: Any, db: Engine, tmp_path: Path) -> None:
    assert publish(str(NEW_FILE)).exit_code == 0
    document = document_of(NEW_FILE)
    document["tiers"]["growth"]["prices"]["month"]["base"] = {
        "amount": 12900,
        "lookup_key": "relay_growth_base_month_2026_12b",
    }
    changed = publish(str(write(tmp_path / "changed.yaml", document)))
    assert changed.exit_code == 1
    assert f"changed.yaml: version: version '{NEW}' was published on 2026-11-10" in changed.output
    assert "a version is immutable" in changed.output
    [row] = stored(db)
    assert row.document["tiers"]["growth"]["prices"]["month"]["base"]["amount"] == 11900


def test_an_invalid_catalog_gets_the_validate_report_and_nothing_is_stored(
    publish: Any, db: Engine, tmp_path: Path
) -> None:
    document = document_of(NEW_FILE)
    document["tiers"]["growth"]["prices"]["month"]["base"]["amount"] = 119.5
    document["tiers"]["starter"]["upgrades"][0]["to"] = "platinum"
    bad = write(tmp_path / "bad.yaml", document)
    validated = CliRunner().invoke(main, ["catalog", "validate", str(bad)])
    refused = publish(str(bad))
    assert (refused.exit_code, validated.exit_code) == (1, 1)
    assert refused.output == validated.output
    assert "bad.yaml: tiers.growth.prices.month.base.amount: must be an integer" in refused.output
    assert "tiers.starter.upgrades[0].to" in refused.output
    assert stored(db) == []


def test_a_version_is_checked_against_the_files_and_the_versions_published_before(
    publish: Any, db: Engine, tmp_path: Path
) -> None:
    # Against the files: an unchanged lookup key standing for a new amount.
    document = document_of(NEW_FILE)
    document["tiers"]["growth"]["prices"]["month"]["base"]["lookup_key"] = "relay_growth_base_month"
    reused = publish(str(write(tmp_path / "reused.yaml", document)))
    assert reused.exit_code == 1
    assert (
        "reused.yaml: tiers.growth.prices.month.base.lookup_key: 'relay_growth_base_month' is "
        "9900 per month at 2026-11-01.1: tiers.growth.prices.month.base"
    ) in reused.output
    assert stored(db) == []
    # Against a version published before: its new lookup key, for yet another amount.
    assert publish(str(NEW_FILE)).exit_code == 0
    later = document_of(NEW_FILE)
    later["version"], later["effective_from"] = "2027-01-01.1", "2027-01-01T00:00:00Z"
    later["tiers"]["growth"]["prices"]["month"]["base"]["amount"] = 12900
    clash = publish(str(write(tmp_path / "clash.yaml", later)))
    assert clash.exit_code == 1
    assert f"is 11900 per month at published {NEW} (catalog-2026-12-01.yaml)" in clash.output
    # And another currency is refused (an account keeps its currency).
    later["tiers"]["growth"]["prices"]["month"]["base"]["amount"] = 11900
    later["currency"] = "EUR"
    euros = publish(str(write(tmp_path / "euros.yaml", later)))
    assert euros.exit_code == 1
    assert "euros.yaml: currency: every version bills in USD" in euros.output
    assert [row.version for row in stored(db)] == [NEW]


def test_a_version_must_be_published_ahead_of_its_effective_from(
    publish: Any, db: Engine, tmp_path: Path
) -> None:
    document = document_of(NEW_FILE)
    soon = datetime(2026, 11, 10, 12, tzinfo=UTC) + LEAD - timedelta(seconds=1)
    document["effective_from"] = soon.isoformat()
    path = write(tmp_path / "soon.yaml", document)
    refused = publish(str(path))
    assert refused.exit_code == 1
    assert "less than 60 s away" in refused.output and "--force" in refused.output
    assert stored(db) == []
    forced = publish(str(path), "--force")
    assert forced.exit_code == 0, forced.output
    assert "warning: effective_from" in forced.output
    assert [row.version for row in stored(db)] == [NEW]
    # The past is never rewritten, forced or not: instants already priced keep their version.
    document["version"] = "2026-11-05.1"
    document["effective_from"] = "2026-11-05T00:00:00Z"
    past = publish(str(write(tmp_path / "past.yaml", document)), "--force")
    assert past.exit_code == 1
    assert "is in the past" in past.output
    assert [row.version for row in stored(db)] == [NEW]


def test_commands_serve_the_published_versions_too(
    publish: Any, db: Engine, database_url: str
) -> None:
    assert publish(str(NEW_FILE)).exit_code == 0
    settings = Settings(database_url=database_url, catalog_path=CATALOG_PATH)
    history = served_catalogs(settings)
    assert history.names == (OLD, NEW)
    # A version at the catalog path and published with the same document is served once.
    both = Settings(database_url=database_url, catalog_path=REPO_ROOT / "pricing_catalog")
    assert served_catalogs(both).names == (OLD, NEW)


# --- replicas ---------------------------------------------------------------------------------


def publish_new(db: Engine) -> None:
    publish_catalog(
        make_session_factory(db),
        load_catalogs(CATALOG_PATH),
        load_catalog(NEW_FILE),
        NEW_FILE.name,
        datetime(2026, 11, 10, 12, tzinfo=UTC),
        lead=LEAD,
    )


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
