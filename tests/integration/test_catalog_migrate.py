"""`upshift catalog migrate` (issue 16 point 3): accounts made through the API move to a later
catalog version. The dry run's numbers are the applied ones; Σ ledger deltas == MRR after; the
NRR report shows the uplift under its own engine; a second run moves nobody; a run stopped part
way is resumed; end-of-term moves wait for the renewal; a limits rollout leaves prices alone."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, func, select

from service.adapters.billing_tables import InvoiceRow, ScheduledChangeRow
from service.adapters.catalog_loader import load_catalogs
from service.adapters.db import make_session_factory
from service.adapters.ledger_tables import LedgerEntryRow
from service.adapters.orm import AccountRow
from service.adapters.repositories import AccountRepository
from service.api.app import create_app
from service.cli import main
from service.domain.catalog import Timing
from service.services.billing import local_gateways
from service.services.catalog_migrate import MigrationRequest, migrate_accounts
from service.services.renewals import renew_due_accounts
from service.settings import Settings
from tests.conftest import REPO_ROOT
from tests.fakes.clock import FakeClock

OLD, NEW = "2026-11-01.1", "2026-12-01.1"
CREATED = datetime(2026, 11, 20, 12, tzinfo=UTC)  # periods run to 20 December
MIGRATED = datetime(2026, 12, 2, 12, tzinfo=UTC)  # 18 of the period's 30 days left
RENEWED = datetime(2026, 12, 21, tzinfo=UTC)

MONTH = {"interval": "month", "current_period_start": "2026-11-20T12:00:00Z"}
ACCOUNTS: dict[str, dict[str, Any]] = {
    "g5": {"tier": "growth", "seats": 5, **MONTH},  # 99.00 -> 119.00
    "g10": {"tier": "growth", "seats": 10, **MONTH},  # 174.00 -> 194.00 (seats unchanged)
    "g-year": {"tier": "growth", "seats": 5, "interval": "year"},  # yearly price unchanged
    "g-big": {"tier": "growth", "seats": 45, **MONTH},  # NEW sells at most 40 seats
    "g-audit": {"tier": "growth", "seats": 5, "addons": {"audit_log": 1}, **MONTH},  # withdrawn
    "g-trial": {"tier": "growth", "seats": 5, "status": "trialing", **MONTH},  # pays nothing yet
    "g-late": {"tier": "growth", "seats": 5, "status": "past_due", **MONTH},  # no plan changes
    "s3": {"tier": "starter", "seats": 3, **MONTH},  # starter's price is the same
    "gone": {"tier": "starter", "seats": 3, "status": "canceled", **MONTH},  # not live
}
PAYING_GROWTH_MONTHLY = ("g5", "g10")  # the accounts whose MRR the migration raises
RAISE = 2_000  # Growth's monthly base, 99.00 -> 119.00
PRORATED_RAISE = RAISE * 18 // 30  # each of them pays the rest of the period now: 12.00


@pytest.fixture
def catalogs(tmp_path: Path) -> Path:
    """The bundled 2026-11-01.1, and a 2026-12-01.1 that raises Growth's monthly base to
    119.00, sells Growth up to 40 seats without the audit log add-on, and gives it 80 projects."""
    folder = tmp_path / "pricing_catalog"
    folder.mkdir()
    old = (REPO_ROOT / "pricing_catalog" / "catalog.yaml").read_text()
    (folder / "catalog.yaml").write_text(old)
    document = yaml.safe_load(old)
    document["version"] = NEW
    document["effective_from"] = "2026-12-01T00:00:00Z"
    growth = document["tiers"]["growth"]
    growth["prices"]["month"]["base"] = {"amount": 11_900, "lookup_key": "growth_month_2026_12"}
    growth["seats"]["max"] = 40
    growth["addons"] = ["api_pack", "projects_pack"]
    growth["limits"]["projects"] = 80
    (folder / "catalog-2026-12-01.yaml").write_text(yaml.safe_dump(document))
    return folder


@pytest.fixture
def service(
    database_url: str, db: Engine, clock: FakeClock, catalogs: Path
) -> Iterator[TestClient]:
    clock.set(CREATED)
    settings = Settings(
        database_url=database_url,
        catalog_path=catalogs,
        token_secret=SecretStr("test-token-secret"),
    )
    with TestClient(create_app(settings, clock=clock, engine=db)) as client:
        yield client


@pytest.fixture
def accounts(service: TestClient, admin_headers: dict[str, str]) -> dict[str, int]:
    """The accounts, made through the API on OLD; each one's MRR as the API reports it."""
    mrr = {}
    for account_id, body in ACCOUNTS.items():
        response = service.put(f"/v1/accounts/{account_id}", json=body, headers=admin_headers)
        assert response.status_code in (200, 201), response.text
        assert response.json()["catalog_version"] == OLD
        mrr[account_id] = response.json()["mrr"]["amount_minor"]
    return mrr


def migrate(database_url: str, catalogs: Path, *arguments: str, now: datetime = MIGRATED) -> Result:
    env = {
        "UPSHIFT_DATABASE_URL": database_url,
        "UPSHIFT_CATALOG_PATH": str(catalogs),
        "UPSHIFT_NOW": now.isoformat(),
        "UPSHIFT_BILLING_BACKEND": "local",
    }
    return CliRunner().invoke(main, ["catalog", "migrate", *arguments], env=env)


def migrate_json(database_url: str, catalogs: Path, *arguments: str) -> dict[str, Any]:
    result = migrate(database_url, catalogs, *arguments, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def numbers(report: dict[str, Any]) -> dict[str, Any]:
    """What a dry run promises and an applied run does: everything but whether it applied."""
    return {key: value for key, value in report.items() if key not in ("applied", "ledger_entries")}


def account(client: TestClient, headers: dict[str, str], account_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/accounts/{account_id}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def ledger(db: Engine) -> list[LedgerEntryRow]:
    with make_session_factory(db)() as session:
        return list(session.scalars(select(LedgerEntryRow).order_by(LedgerEntryRow.id)))


def usd(minor: int) -> dict[str, Any]:
    return {"amount_minor": minor, "currency": "USD"}


def test_dry_run_numbers_are_the_applied_ones_and_the_ledger_books_the_uplift(
    service: TestClient,
    accounts: dict[str, int],
    admin_headers: dict[str, str],
    finance_headers: dict[str, str],
    database_url: str,
    catalogs: Path,
    db: Engine,
) -> None:
    entries_before = len(ledger(db))
    dry = migrate_json(database_url, catalogs, "--to", NEW, "--when", "immediate")
    assert dry["applied"] is False and dry["ledger_entries"] is None
    assert len(ledger(db)) == entries_before  # a dry run changes nothing
    assert account(service, admin_headers, "g5")["catalog_version"] == OLD

    assert dry["accounts"] == {
        "considered": 8,  # every live account
        "already_on_target": 0,
        "moved": 5,  # g5, g10, g-year, g-trial, s3
        "scheduled": 0,
        "not_moved": 3,
        "billed_by_stripe": 0,
    }
    before = sum(accounts[a] for a in ("g5", "g10", "g-year", "s3"))
    assert dry["mrr_before"] == usd(before)
    assert dry["mrr_change"] == usd(RAISE * len(PAYING_GROWTH_MONTHLY))
    assert dry["amount_due"] == usd(PRORATED_RAISE * len(PAYING_GROWTH_MONTHLY))
    growth = next(t for t in dry["tiers"] if t["tier"] == "growth")
    assert (growth["moved"], growth["not_moved"]) == (4, 3)
    assert dry["changes"][OLD][0].startswith("tiers.growth.prices.month.base: price changed")
    problems = {
        a["account_id"]: [p["code"] for p in a["problems"]] for a in dry["accounts_not_moved"]
    }
    assert problems == {
        "g-audit": ["addon_not_allowed"],
        "g-big": ["seats_out_of_range"],
        "g-late": ["account_not_billable"],
    }

    applied = migrate_json(database_url, catalogs, "--to", NEW, "--when", "immediate", "--apply")
    assert applied["applied"] is True
    assert numbers(applied) == numbers(dry)
    # One movement per account whose MRR moved; the others (same price, or not paying) move
    # their version with no MRR to book.
    assert applied["ledger_entries"] == len(PAYING_GROWTH_MONTHLY)

    for account_id in ("g5", "g10", "g-year", "g-trial", "s3"):
        moved = account(service, admin_headers, account_id)
        assert (moved["catalog_version"], moved["limits_version"]) == (NEW, NEW), account_id
    for account_id in ("g-big", "g-audit", "g-late"):
        kept = account(service, admin_headers, account_id)
        assert kept["catalog_version"] == OLD
        assert kept["mrr"]["amount_minor"] == accounts[account_id]
    assert account(service, admin_headers, "g5")["mrr"]["amount_minor"] == 11_900
    assert account(service, admin_headers, "g10")["mrr"]["amount_minor"] == accounts["g10"] + RAISE

    # Σ deltas == MRR after, account by account.
    entries = ledger(db)
    for account_id in ACCOUNTS:
        booked = sum(e.mrr_delta_minor for e in entries if e.account_id == account_id)
        assert booked == account(service, admin_headers, account_id)["mrr"]["amount_minor"]
    uplifts = [e for e in entries if e.idempotency_key.startswith("catalog_migration:")]
    assert sorted(e.account_id for e in uplifts) == sorted(PAYING_GROWTH_MONTHLY)
    assert {(e.kind, e.engine, e.mrr_delta_minor, e.catalog_version) for e in uplifts} == {
        ("expansion", "price_uplift", RAISE, NEW)
    }
    # The prorated difference is invoiced now, as any upgrade's is.
    with make_session_factory(db)() as session:
        charged = session.scalars(
            select(InvoiceRow).where(InvoiceRow.billing_reason == "subscription_update")
        ).all()
    assert sorted((i.account_id, i.amount_due_minor) for i in charged) == [
        (a, PRORATED_RAISE) for a in sorted(PAYING_GROWTH_MONTHLY)
    ]

    # The NRR report shows it apart from seats, upsell and add-ons.
    response = service.get(
        "/v1/reports/nrr",
        params={"from": "2026-12-01T00:00:00Z", "to": "2027-01-01T00:00:00Z"},
        headers=finance_headers,
    )
    assert response.status_code == 200, response.text
    december = response.json()["periods"][0]
    assert december["expansion_by_engine_minor"] == {
        "seat": 0,
        "upsell": 0,
        "addon": 0,
        "strategic": 0,
        "price_uplift": RAISE * len(PAYING_GROWTH_MONTHLY),
    }
    assert december["expansion_minor"] == RAISE * len(PAYING_GROWTH_MONTHLY)

    # Running it again moves nobody and books nothing.
    again = migrate_json(database_url, catalogs, "--to", NEW, "--when", "immediate", "--apply")
    assert again["accounts"]["already_on_target"] == 5
    assert (again["accounts"]["moved"], again["ledger_entries"]) == (0, 0)
    assert len(ledger(db)) == len(entries)


def test_the_table_and_progress_bar(
    accounts: dict[str, int], database_url: str, catalogs: Path
) -> None:
    result = migrate(database_url, catalogs, "--to", NEW, "--when", "immediate", "--tier", "growth")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "dry run (nothing changed; --apply moves them)" in out
    assert "7 accounts in scope: 0 already on 2026-12-01.1, 4 moved" in out
    assert "g-big: seats above max 40; not moved" in out
    assert "accounts" in result.stderr  # the progress bar's label


def test_a_run_stopped_part_way_is_resumed_and_moves_nobody_twice(
    accounts: dict[str, int], database_url: str, catalogs: Path, db: Engine
) -> None:
    history = load_catalogs(catalogs)
    factory = make_session_factory(db)
    request = MigrationRequest(NEW, Timing.immediate)
    batches = 0

    def stop_after_six(_count: int) -> None:
        nonlocal batches
        batches += 1
        if batches == 6:
            raise KeyboardInterrupt  # the operator's ^C, six committed batches in

    with pytest.raises(KeyboardInterrupt):
        migrate_accounts(
            factory, history, request, MIGRATED, apply=True, batch_size=1, on_batch=stop_after_six
        )
    # By id: g-audit, g-big and g-late cannot move; g-trial, g-year and g10 moved.
    first = len([e for e in ledger(db) if e.idempotency_key.startswith("catalog_migration:")])
    assert first == 1  # g10's (the trial and the yearly plan move no MRR)
    resumed = migrate_accounts(factory, history, request, MIGRATED, apply=True, batch_size=2)
    assert resumed.already == 3
    assert (resumed.moved, len(resumed.not_moved)) == (2, 3)  # g5 and s3
    uplifts = [e for e in ledger(db) if e.idempotency_key.startswith("catalog_migration:")]
    assert first + resumed.ledger_entries == len(uplifts) == len(PAYING_GROWTH_MONTHLY)
    assert len({e.account_id for e in uplifts}) == len(uplifts)


def test_end_of_term_is_scheduled_and_the_renewal_books_it_as_a_price_uplift(
    service: TestClient,
    accounts: dict[str, int],
    admin_headers: dict[str, str],
    database_url: str,
    catalogs: Path,
    db: Engine,
    clock: FakeClock,
) -> None:
    arguments = ("--to", NEW, "--when", "end_of_term", "--tier", "growth")
    dry = migrate_json(database_url, catalogs, *arguments)
    applied = migrate_json(database_url, catalogs, *arguments, "--apply")
    assert numbers(applied) == numbers(dry)
    assert applied["accounts"]["scheduled"] == 4  # g5, g10, g-year, g-trial
    assert applied["amount_due"] == usd(0)  # nothing is prorated
    assert applied["mrr_change"] == usd(RAISE * len(PAYING_GROWTH_MONTHLY))
    assert applied["ledger_entries"] == 0  # booked when the renewal applies it
    assert account(service, admin_headers, "g5")["catalog_version"] == OLD

    # A second run schedules nothing again.
    again = migrate_json(database_url, catalogs, *arguments, "--apply")
    assert (again["accounts"]["already_on_target"], again["accounts"]["scheduled"]) == (4, 0)
    with make_session_factory(db)() as session:
        pending = session.scalar(select(func.count()).where(ScheduledChangeRow.status == "pending"))
    assert pending == 4

    history = load_catalogs(catalogs)
    clock.set(RENEWED)
    renew_due_accounts(
        make_session_factory(db), history.in_force(RENEWED), local_gateways(set()), RENEWED
    )
    for account_id in ("g5", "g10", "g-trial"):
        renewed = account(service, admin_headers, account_id)
        assert (renewed["catalog_version"], renewed["limits_version"]) == (NEW, NEW)
    assert account(service, admin_headers, "g5")["mrr"]["amount_minor"] == 11_900
    entries = ledger(db)
    uplifts = [e for e in entries if e.engine == "price_uplift"]
    assert sorted(e.account_id for e in uplifts) == sorted(PAYING_GROWTH_MONTHLY)
    assert {(e.kind, e.mrr_delta_minor) for e in uplifts} == {("expansion", RAISE)}
    for account_id in ACCOUNTS:
        booked = sum(e.mrr_delta_minor for e in entries if e.account_id == account_id)
        assert booked == account(service, admin_headers, account_id)["mrr"]["amount_minor"]


def test_a_limits_rollout_moves_limits_and_leaves_prices_alone(
    service: TestClient,
    accounts: dict[str, int],
    admin_headers: dict[str, str],
    database_url: str,
    catalogs: Path,
    db: Engine,
) -> None:
    entries = len(ledger(db))
    dry = migrate(database_url, catalogs, "--to", NEW, "--limits-only", "--tier", "growth")
    assert dry.exit_code == 0, dry.output
    assert "limits and entitlements only" in dry.stdout
    assert "prices untouched: no invoice, no ledger entry" in dry.stdout

    applied = migrate_json(database_url, catalogs, "--to", NEW, "--limits-only", "--apply")
    assert applied["when"] is None and applied["limits_only"] is True
    # The audit-log account keeps its limits (NEW has no such add-on for Growth); seats above
    # NEW's maximum do not matter to limits.
    assert [a["account_id"] for a in applied["accounts_not_moved"]] == ["g-audit"]
    assert applied["accounts"]["moved"] == 7
    assert applied["mrr_change"] == usd(0) and applied["ledger_entries"] == 0
    assert len(ledger(db)) == entries
    g5 = account(service, admin_headers, "g5")
    assert (g5["catalog_version"], g5["limits_version"]) == (OLD, NEW)
    assert g5["mrr"]["amount_minor"] == accounts["g5"]

    # Moving the price afterwards takes the limits along (they are on NEW already).
    moved = migrate_json(database_url, catalogs, "--to", NEW, "--when", "immediate", "--apply")
    assert moved["ledger_entries"] == len(PAYING_GROWTH_MONTHLY)
    assert account(service, admin_headers, "g5")["catalog_version"] == NEW


def test_only_the_accounts_in_the_file(
    accounts: dict[str, int], database_url: str, catalogs: Path, tmp_path: Path
) -> None:
    listed = tmp_path / "accounts.txt"
    listed.write_text("# the two who asked\ng5\n\ns3\nnobody\n")
    report = migrate_json(
        database_url, catalogs, "--to", NEW, "--when", "immediate", "--accounts", str(listed)
    )
    assert (report["accounts"]["considered"], report["accounts"]["moved"]) == (2, 2)
    assert [(a["account_id"], a["problems"][0]["code"]) for a in report["accounts_not_moved"]] == [
        ("nobody", "unknown_account")
    ]


def test_with_stripe_billing_the_dry_run_counts_stripe_and_apply_needs_a_key(
    accounts: dict[str, int], database_url: str, catalogs: Path
) -> None:
    """Stripe-billed accounts move through Stripe (tests/integration/test_catalog_migrate_
    stripe.py); without a Stripe key --apply is refused before anything moves."""
    env = {
        "UPSHIFT_DATABASE_URL": database_url,
        "UPSHIFT_CATALOG_PATH": str(catalogs),
        "UPSHIFT_NOW": MIGRATED.isoformat(),
        "UPSHIFT_BILLING_BACKEND": "stripe",
    }
    arguments = ["catalog", "migrate", "--to", NEW, "--when", "immediate", "--json"]
    dry = CliRunner().invoke(main, arguments, env=env)
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["accounts"]["billed_by_stripe"] == 5
    applied = CliRunner().invoke(main, [*arguments, "--apply"], env=env)
    assert applied.exit_code == 2
    assert "UPSHIFT_STRIPE_SECRET_KEY is required" in applied.output


def test_an_unknown_version_or_a_missing_when_is_refused(
    accounts: dict[str, int], database_url: str, catalogs: Path
) -> None:
    unknown = migrate(database_url, catalogs, "--to", "2027-01-01.1", "--when", "immediate")
    assert unknown.exit_code == 2
    assert "catalog version '2027-01-01.1' is not loaded" in unknown.stderr
    assert "2026-12-01.1" in unknown.stderr
    no_when = migrate(database_url, catalogs, "--to", NEW)
    assert no_when.exit_code == 2
    assert "--when immediate|end_of_term is required" in no_when.stderr


def test_two_runs_at_once_move_each_account_once(
    accounts: dict[str, int], catalogs: Path, db: Engine
) -> None:
    """Two operators (or a retry while the first still runs): the batches lock their accounts
    (SKIP LOCKED on PostgreSQL; SQLite runs one writer at a time), and an account one run moved
    is on the target when the other locks it, so it is moved and booked once."""
    history = load_catalogs(catalogs)
    factory = make_session_factory(db)
    request = MigrationRequest(NEW, Timing.immediate)
    with ThreadPoolExecutor(2) as pool:
        runs = [
            pool.submit(
                migrate_accounts, factory, history, request, MIGRATED, apply=True, batch_size=1
            )
            for _ in range(2)
        ]
        reports = [run.result(timeout=60) for run in runs]
    assert sum(r.moved for r in reports) == 5  # g5, g10, g-year, g-trial, s3
    assert sum(r.ledger_entries for r in reports) == len(PAYING_GROWTH_MONTHLY)
    uplifts = [e for e in ledger(db) if e.engine == "price_uplift"]
    assert sorted(e.account_id for e in uplifts) == sorted(PAYING_GROWTH_MONTHLY)


def test_an_account_locked_by_an_upgrade_is_moved_once_the_upgrade_commits(
    accounts: dict[str, int], catalogs: Path, db: Engine
) -> None:
    """A row another transaction holds (a customer's upgrade) is skipped, then taken again at
    the end of the run, waiting for its lock: moved from the state that transaction left."""
    if db.dialect.name != "postgresql":
        pytest.skip("row locks are PostgreSQL's; SQLite runs one writer at a time")
    history = load_catalogs(catalogs)
    factory = make_session_factory(db)
    request = MigrationRequest(NEW, Timing.immediate)
    locked = threading.Event()
    release = threading.Event()

    def upgrade_holding_g5() -> None:
        with factory() as session, session.begin():
            row = AccountRepository(session).get("g5", for_update=True)
            assert row is not None
            locked.set()
            release.wait(30)
            row.seats = 6  # the customer bought a seat meanwhile (at their own version)
            row.updated_at = MIGRATED

    def release_soon(_count: int) -> None:
        release.set()  # after the first batch: g5 was skipped, the upgrade may now commit

    with ThreadPoolExecutor(1) as pool:
        holder = pool.submit(upgrade_holding_g5)
        assert locked.wait(10)
        report = migrate_accounts(
            factory, history, request, MIGRATED, apply=True, on_batch=release_soon
        )
        holder.result(timeout=30)
    assert report.moved == 5
    with factory() as session:
        g5 = session.get(AccountRow, "g5")
        assert g5 is not None
        assert (g5.seats, g5.catalog_version) == (6, NEW)  # the upgrade's seat, then the move
    uplift = [e for e in ledger(db) if e.engine == "price_uplift" and e.account_id == "g5"]
    assert len(uplift) == 1


def test_moving_back_to_a_lower_price_is_a_contraction_credited_to_the_balance(
    service: TestClient,
    accounts: dict[str, int],
    admin_headers: dict[str, str],
    database_url: str,
    catalogs: Path,
    db: Engine,
) -> None:
    up = ("--when", "immediate", "--apply", "--accounts")
    listed = catalogs.parent / "g5.txt"
    listed.write_text("g5\n")
    migrate_json(database_url, catalogs, "--to", NEW, *up, str(listed))
    back = migrate_json(database_url, catalogs, "--to", OLD, *up, str(listed))
    assert back["mrr_change"] == usd(-RAISE)
    assert back["amount_due"] == usd(-PRORATED_RAISE)  # the rest of the period, credited
    g5 = account(service, admin_headers, "g5")
    assert (g5["catalog_version"], g5["mrr"]["amount_minor"]) == (OLD, accounts["g5"])
    with make_session_factory(db)() as session:
        row = session.get(AccountRow, "g5")
        assert row is not None and row.credit_balance_minor == PRORATED_RAISE
    uplifts = [(e.kind, e.engine, e.mrr_delta_minor) for e in ledger(db) if e.account_id == "g5"]
    assert uplifts[-2:] == [
        ("expansion", "price_uplift", RAISE),
        ("contraction", "price_uplift", -RAISE),
    ]


def test_a_customer_change_replaces_a_scheduled_move_and_the_next_run_schedules_it_again(
    service: TestClient,
    accounts: dict[str, int],
    admin_headers: dict[str, str],
    database_url: str,
    catalogs: Path,
    db: Engine,
    clock: FakeClock,
) -> None:
    arguments = ("--to", NEW, "--when", "end_of_term", "--accounts")
    listed = catalogs.parent / "g10.txt"
    listed.write_text("g10\n")
    first = migrate_json(database_url, catalogs, *arguments, str(listed), "--apply")
    assert first["accounts"]["scheduled"] == 1

    # The customer buys a seat at their own version: the change supersedes what waited for the
    # period end, as it does a scheduled downgrade.
    clock.set(MIGRATED)
    bought = service.post(
        "/v1/accounts/g10/upgrades",
        json={"target": {"seats": 11}},
        headers={**admin_headers, "Idempotency-Key": "seat-11"},
    )
    assert bought.status_code == 200, bought.text
    assert account(service, admin_headers, "g10")["catalog_version"] == OLD

    again = migrate_json(database_url, catalogs, *arguments, str(listed), "--apply")
    assert again["accounts"]["scheduled"] == 1  # the move again, now with the 11th seat
    with make_session_factory(db)() as session:
        pending = session.scalars(
            select(ScheduledChangeRow).where(
                ScheduledChangeRow.account_id == "g10", ScheduledChangeRow.status == "pending"
            )
        ).all()
    assert [(p.target["seats"], p.target["version"]) for p in pending] == [(11, NEW)]
