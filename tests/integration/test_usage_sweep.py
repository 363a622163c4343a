"""`upshift signals sweep`: every account re-evaluated in pages, after a catalog change, once."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from service.adapters.catalog_loader import load_catalog, load_catalogs
from service.adapters.db import make_session_factory
from service.adapters.signal_repository import SignalRepository
from service.cli import main
from service.domain.catalog import Catalog
from service.services.signals import sweep
from tests.conftest import CATALOG_PATH
from tests.fakes.clock import FakeClock
from tests.usage_fixtures import crossing_keys, event, ingest, put_account, row_counts

STRICTER = "2026-11-05.1"


def stricter_catalog(tmp_path: Path) -> Path:
    """A catalog directory: the bundled version, and a later one (in force from 5 November) with
    Starter's API calls cut to 5,000 and the seats threshold at 60 %."""
    folder = tmp_path / "catalog"
    folder.mkdir(exist_ok=True)
    (folder / "catalog.yaml").write_text(CATALOG_PATH.read_text())
    document = yaml.safe_load(CATALOG_PATH.read_text())
    document["version"] = STRICTER
    document["effective_from"] = "2026-11-05T00:00:00Z"
    document["tiers"]["starter"]["limits"]["api_calls"] = 5_000
    for threshold in document["thresholds"]:
        if threshold["key"] == "seats_high":
            threshold["at_percent"] = 60
    (folder / "stricter.yaml").write_text(yaml.safe_dump(document))
    return folder


def roll_out_stricter(db: Engine, tmp_path: Path) -> Catalog:
    """The stricter version, with its limits rolled out to every account (their prices stay on
    the bundled version): thresholds are the version in force's, limits each account's own."""
    with db.begin() as connection:
        connection.execute(text("UPDATE accounts SET limits_version = :v"), {"v": STRICTER})
    return load_catalogs(stricter_catalog(tmp_path)).version(STRICTER)


@pytest.fixture
def seven_accounts(
    client: TestClient, admin_headers: dict[str, str], ingest_headers: dict[str, str]
) -> None:
    """Seven Starter accounts at 0, 1,000 … 6,000 API calls; the last two use 2 of 3 seats."""
    for n in range(7):
        put_account(client, admin_headers, f"acct-{n}", tier="starter", seats=3)
        events = [event(f"e{n}", account_id=f"acct-{n}", quantity=n * 1_000)]
        if n >= 5:
            events.append(
                event(f"s{n}", account_id=f"acct-{n}", feature="seats", quantity=2, action="set")
            )
        ingest(client, ingest_headers, *events)
    assert row_counts(client.app.state.engine)["signal_crossings"] == 0  # type: ignore[attr-defined]


def test_a_catalog_change_is_swept_in_pages_once(
    db: Engine, clock: FakeClock, seven_accounts: None, tmp_path: Path
) -> None:
    factory = make_session_factory(db)
    bundled = load_catalog(CATALOG_PATH)
    assert sweep(factory, bundled, clock.now(), batch_size=3).crossings == 0

    stricter = roll_out_stricter(db, tmp_path)
    pages = []
    report = sweep(factory, stricter, clock.now(), batch_size=3, on_page=pages.append)
    assert [page.accounts for page in pages] == [3, 3, 1]
    assert report.accounts == 7
    # 4,000 of 5,000 is 80 %; 5,000 and 6,000 are at or past the limit; 2 of 3 seats is 66 %.
    assert crossing_keys(db) == [
        ("acct-4", "api_calls_warn", "2026-11-01"),
        ("acct-5", "api_calls_limit", "2026-11-01"),
        ("acct-5", "api_calls_warn", "2026-11-01"),
        ("acct-5", "seats_high", "2026-11-10"),
        ("acct-6", "api_calls_limit", "2026-11-01"),
        ("acct-6", "api_calls_warn", "2026-11-01"),
        ("acct-6", "seats_high", "2026-11-10"),
    ]
    assert report.crossings == 7
    with db.connect() as connection:
        versions = set(
            connection.execute(text("SELECT catalog_version FROM signal_crossings")).scalars()
        )
    assert versions == {STRICTER}
    assert row_counts(db)["signal_outbox"] == 7

    assert sweep(factory, stricter, clock.now(), batch_size=2).crossings == 0
    assert row_counts(db)["signal_crossings"] == 7


@pytest.mark.parametrize("workers", [1, 3])
def test_pages_swept_at_once_record_what_one_at_a_time_would(
    db: Engine, clock: FakeClock, seven_accounts: None, tmp_path: Path, workers: int
) -> None:
    stricter = roll_out_stricter(db, tmp_path)
    pages = []
    report = sweep(
        make_session_factory(db),
        stricter,
        clock.now(),
        batch_size=1,
        workers=workers,
        on_page=pages.append,
    )
    # Seven one-account pages, reported in account order whichever finished first.
    assert [page.last_id for page in pages] == [f"acct-{n}" for n in range(7)]
    assert [page.crossings for page in pages] == [0, 0, 0, 0, 1, 3, 3]
    assert report == type(report)(accounts=7, crossings=7)
    assert len(crossing_keys(db)) == row_counts(db)["signal_outbox"] == 7


def test_the_sweep_matches_what_ingest_would_have_recorded(
    db: Engine,
    client: TestClient,
    clock: FakeClock,
    admin_headers: dict[str, str],
    ingest_headers: dict[str, str],
) -> None:
    put_account(client, admin_headers, "acme", tier="growth", seats=6, addons={"api_pack": 1})
    ingest(
        client,
        ingest_headers,
        event("a", quantity=170_000),
        event("p", feature="projects", quantity=45),
        event("r", feature="automation_runs", quantity=4_200, timestamp="2026-11-10T12:00:00Z"),
    )
    recorded = crossing_keys(db)
    with db.begin() as connection:
        for table in ("signal_outbox", "signal_crossings"):
            connection.execute(text(f"DELETE FROM {table}"))
    sweep(make_session_factory(db), load_catalog(CATALOG_PATH), clock.now())
    assert (
        crossing_keys(db)
        == recorded
        == [
            ("acme", "api_calls_warn", "2026-11-01"),
            ("acme", "automation_runs_warn", "2026-11-10"),
            ("acme", "projects_warn", "2026-11-10"),
        ]
    )


def test_accounts_on_a_retired_tier_do_not_stop_the_sweep(
    db: Engine, clock: FakeClock, seven_accounts: None
) -> None:
    bundled = load_catalog(CATALOG_PATH)
    document = bundled.model_dump(mode="json")
    document["tiers"]["legacy"] = document["tiers"].pop("starter")
    document["tiers"]["legacy"]["limits"]["api_calls"] = 1
    for tier in document["tiers"].values():
        for path in (*tier["upgrades"], *tier["downgrades"]):
            if path["to"] == "starter":
                path["to"] = "legacy"
    renamed = Catalog.parse(document)
    report = sweep(make_session_factory(db), renamed, clock.now(), batch_size=4)
    assert report == type(report)(accounts=7, crossings=0)


def test_sweep_command_shows_progress_and_is_idempotent(
    db: Engine,
    database_url: str,
    clock: FakeClock,
    seven_accounts: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("UPSHIFT_DATABASE_URL", database_url)
    roll_out_stricter(db, tmp_path)
    monkeypatch.setenv("UPSHIFT_CATALOG_PATH", str(stricter_catalog(tmp_path)))
    # The command runs at the usage's own moment, whatever the machine's date.
    monkeypatch.setenv("UPSHIFT_NOW", clock.now().isoformat())
    runner = CliRunner()
    first = runner.invoke(main, ["signals", "sweep", "--batch-size", "2"])
    assert first.exit_code == 0, first.output
    assert "swept 7 accounts; 7 new crossings recorded" in first.stdout
    assert "accounts" in first.stderr  # the progress bar
    again = runner.invoke(main, ["signals", "sweep"])
    assert "swept 7 accounts; 0 new crossings recorded" in again.stdout


def test_sweep_command_refuses_a_bad_catalog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "catalog.yaml"
    bad.write_text("version: x\n")
    monkeypatch.setenv("UPSHIFT_CATALOG_PATH", str(bad))
    result = CliRunner().invoke(main, ["signals", "sweep"])
    assert result.exit_code == 2
    assert "effective_from: Field required" in result.output


def test_recorded_keys_are_read_back_for_the_accounts_and_periods_asked(
    db: Engine, clock: FakeClock, seven_accounts: None, tmp_path: Path
) -> None:
    factory = make_session_factory(db)
    sweep(factory, roll_out_stricter(db, tmp_path), clock.now())
    november = datetime(2026, 11, 1, tzinfo=UTC)
    billing = datetime(2026, 11, 10, 12, tzinfo=UTC)  # acct-5's period: created at 12:00
    with factory() as session:
        signals = SignalRepository(session)
        assert signals.recorded_keys({"acct-5", "acct-4", "ghost"}, {november}) == {
            ("acct-4", "api_calls_warn", november),
            ("acct-5", "api_calls_limit", november),
            ("acct-5", "api_calls_warn", november),
        }
        seats = {key for key in signals.recorded_keys({"acct-5"}, {billing, november})}
        assert ("acct-5", "seats_high", billing) in seats and len(seats) == 3
