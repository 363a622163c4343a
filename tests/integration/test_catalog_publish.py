"""Publishing a catalog version (issue 16, point 5): `upshift catalog publish` checks a file as
`catalog validate` does and against every version served, stores it once (idempotent, versions
immutable) and only ahead of its effective_from; `upshift catalog withdraw` takes one back before
anything is priced at it. How replicas load them: test_catalog_watch.py."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
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
from service.adapters.catalog_store import StoredVersion, stored_versions
from service.adapters.db import make_session_factory
from service.api.app import create_app
from service.cli import main
from service.commands.common import served_catalogs
from service.domain.catalog import Catalog
from service.services.catalog_publishing import publish_catalog, publish_lead
from service.settings import Settings
from tests.conftest import CATALOG_PATH, REPO_ROOT
from tests.fakes.clock import FakeClock

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


@pytest.fixture
def withdraw(publish: Any) -> Any:
    runner = CliRunner()
    return lambda *args: runner.invoke(main, ["catalog", "withdraw", *args])


def test_a_version_is_withdrawn_before_anything_is_priced_at_it_and_its_name_stays_taken(
    publish: Any, withdraw: Any, db: Engine, database_url: str, tmp_path: Path
) -> None:
    assert publish(str(NEW_FILE)).exit_code == 0
    done = withdraw(NEW)
    assert done.exit_code == 0, done.output
    assert f"withdrew version {NEW} (it was to take effect at 2026-12-01T00:00:00+00:00)" in (
        done.output
    )
    settings = Settings(database_url=database_url, catalog_path=CATALOG_PATH)
    assert served_catalogs(settings).names == (OLD,)
    again = withdraw(NEW)
    assert again.exit_code == 0 and f"version {NEW} was withdrawn already" in again.output
    # The name stands for the withdrawn document for good; a correction takes a new name, and
    # may take the withdrawn version's start.
    reused = publish(str(NEW_FILE))
    assert reused.exit_code == 1 and f"version '{NEW}' was withdrawn on" in reused.output
    document = document_of(NEW_FILE)
    document["version"] = "2026-12-01.2"
    fixed = publish(str(write(tmp_path / "fixed.yaml", document)))
    assert fixed.exit_code == 0, fixed.output
    assert served_catalogs(settings).names == (OLD, "2026-12-01.2")
    with Session(db) as session:
        every = stored_versions(session, withdrawn=True)
    assert [(r.version, r.withdrawn_at is not None) for r in every] == [
        (NEW, True),
        ("2026-12-01.2", False),
    ]


def test_a_version_something_may_be_priced_at_is_not_withdrawn(
    publish: Any,
    withdraw: Any,
    db: Engine,
    settings: Settings,
    clock: FakeClock,
    admin_headers: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert publish(str(NEW_FILE)).exit_code == 0
    assert withdraw("2027-01-01.1").output.startswith(
        "not withdrawn: version '2027-01-01.1' is not published"
    )
    assert withdraw(OLD).exit_code == 1  # a file's version goes with its file
    # An account imported at the new version (sold elsewhere at it) keeps it published.
    with TestClient(create_app(settings, clock=clock, engine=db)) as http:
        body = {"tier": "growth", "interval": "month", "seats": 5, "catalog_version": NEW}
        assert http.put("/v1/accounts/imported", json=body, headers=admin_headers).is_success
    used = withdraw(NEW)
    assert used.exit_code == 1
    assert "is in use (account 'imported' is on it); it stays published" in used.output
    # Within the propagation window of its start, a replica may be pricing at it already.
    monkeypatch.setenv("UPSHIFT_NOW", "2026-11-30T23:59:30Z")
    late = withdraw(NEW)
    assert late.exit_code == 1 and "less than 60 s from now" in late.output
    assert [row.version for row in stored(db)] == [NEW]


def publish_new(db: Engine) -> None:
    publish_catalog(
        make_session_factory(db),
        load_catalogs(CATALOG_PATH),
        load_catalog(NEW_FILE),
        NEW_FILE.name,
        datetime(2026, 11, 10, 12, tzinfo=UTC),
        lead=LEAD,
    )
