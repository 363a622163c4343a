"""`upshift catalog diff` and `upshift catalog migrate --apply` over many accounts on PostgreSQL
(issue 16's targets: a diff of >= 50,000 accounts a second, a migration of >= 2,000).

    UPSHIFT_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \
        .venv/bin/python bench/catalog.py [--accounts 100000]

One account is made through the real service (PUT, and kept); its row is cloned with COPY to
`--accounts` accounts on a spread of plans the bundled catalog sells (every tier and interval,
seats across each tier's range, add-on combinations; 5 in 100 trialing, 1 in 100 canceled).
NEW is a copy of pricing_catalog/catalog.yaml with Growth's monthly base raised from 99.00 to
109.00.

Prints one JSON line: `diff_accounts_per_s` (live accounts projected per second by the diff's use
case: the streaming read, grouping and pricing), the wall time of the whole command
(`diff_command_s`, `upshift catalog diff --json` in a fresh process; `command_startup_s` is the
part of it spent starting Python and importing), and the checks: Σ per-tier
changes == the total change, MRR before == Σ each account's MRR (account_mrr, the ledger's), and
the change == the raised price times the paying monthly Growth accounts.

Then the migration (local billing): every clone gets its `new` ledger movement first (so the
ledger stands at each account's MRR, as the service leaves it), then
`catalog migrate --to 2026-12-01.1 --when immediate` (the bundled version: Growth monthly
99.00 -> 119.00) runs as a dry run and applied, in the use case's own batches, at 2 December
(the accounts' periods run 10 November to 10 December). `migrate_accounts_per_s` is the
accounts moved per second by the applied run: locked batches, proration, invoices, subscription
lines, ledger movements, commits. Its checks: the dry run's numbers == the applied ones, Σ
ledger deltas == Σ account MRR after, the NRR report's December `price_uplift` == the
migration's MRR change, and a second applied run moves nobody.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from common import REPO, fresh_database, new_key, print_result  # type: ignore[import-not-found]
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, text

from service.adapters.catalog_loader import load_catalog, load_catalogs
from service.adapters.db import make_engine, make_session_factory
from service.adapters.usage_repository import AccountColumns
from service.api.app import create_app
from service.domain.catalog import Catalog, Timing
from service.domain.ledger import Engine as LedgerEngine
from service.domain.ledger import Granularity, PlanSnapshot, Source
from service.ports import FixedClock
from service.services.account_state import account_mrr
from service.services.api_keys import Scope
from service.services.catalog_diff import diff_against_accounts
from service.services.catalog_migrate import MigrationReport, MigrationRequest, migrate_accounts
from service.services.ledger import MovementRequest, record_movements
from service.services.reports import nrr_report
from service.settings import Settings

OLD_PATH = REPO / "pricing_catalog" / "catalog.yaml"
SEEDED_AT = datetime(2026, 11, 10, tzinfo=UTC)
RAISED = ("growth", "month", 9900, 10900)  # tier, interval, old and new base price
MIGRATED_AT = datetime(2026, 12, 2, 12, tzinfo=UTC)
MIGRATED_TO = "2026-12-01.1"  # the bundled version: Growth monthly 99.00 -> 119.00
MIGRATION_RAISE = 11900 - 9900


def new_catalog(folder: Path) -> Path:
    document = yaml.safe_load(OLD_PATH.read_text())
    tier, interval, old, new = RAISED
    price = document["tiers"][tier]["prices"][interval]["base"]
    assert price["amount"] == old, price
    price["amount"] = new
    document["version"] = "2026-12-01.1"
    path = folder / "catalog-new.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def sold_plans(catalog: Catalog) -> list[tuple[str, str, int, str]]:
    """(tier, interval, seats, add-ons JSON) for a spread of plans the catalog sells."""
    plans = []
    for key, tier in catalog.tiers.items():
        intervals = [i.value for i in tier.prices] or ["month"]
        seat_steps = sorted({tier.seats.included, tier.seats.included + 2, tier.seats.max})
        addon_sets: list[dict[str, int]] = [{}]
        addon_sets += [{addon: 1} for addon in tier.addons]
        addon_sets += [
            {addon: 2} for addon in tier.addons if catalog.addons[addon].max_quantity > 1
        ]
        for interval, seats, addons in itertools.product(intervals, seat_steps, addon_sets):
            plans.append((key, interval, seats, json.dumps(addons)))
    return plans


def seed(url: str, engine: Engine, accounts: int, catalog: Catalog) -> None:
    """One account through the service, then COPY of its row with each clone's own plan."""
    settings = Settings(database_url=url, token_secret=SecretStr("bench-token-secret"))
    headers = {"Authorization": f"Bearer {new_key(engine, Scope.admin)}"}
    app = create_app(settings, clock=FixedClock(SEEDED_AT), engine=engine)
    with TestClient(app) as http:
        body = {"tier": "growth", "interval": "month", "seats": 5}
        http.put("/v1/accounts/tmpl", json=body, headers=headers).raise_for_status()
    plans = sold_plans(catalog)
    with engine.begin() as connection:
        template = dict(
            connection.execute(text("SELECT * FROM accounts WHERE id = 'tmpl'")).mappings().one()
        )
        columns = list(template)
        cursor = connection.connection.driver_connection.cursor()
        with cursor.copy(f"COPY accounts ({', '.join(columns)}) FROM STDIN") as copy:
            for number in range(accounts):
                tier, interval, seats, addons = plans[number % len(plans)]
                slot = number % 100
                status = "canceled" if slot == 99 else "trialing" if slot >= 94 else "active"
                row = template | {
                    "id": f"acct-{number:06d}",
                    "tier": tier,
                    "interval": interval,
                    "seats": seats,
                    "addons": addons,
                    "status": status,
                }
                copy.write_row([_cell(row[c]) for c in columns])
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE accounts"))


def _cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, dict | list) else value


def command_seconds(url: str, old: Path, new: Path) -> tuple[float, dict[str, Any]]:
    env = {**os.environ, "UPSHIFT_DATABASE_URL": url, "UPSHIFT_LOG_LEVEL": "WARNING"}
    command = [sys.executable, "-m", "service.cli", "catalog", "diff", str(old), str(new), "--json"]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"catalog diff failed ({done.returncode}): {done.stderr}")
    return elapsed, json.loads(done.stdout)


def startup_seconds() -> float:
    """The same process doing nothing (`catalog diff --help`): interpreter start and imports."""
    command = [sys.executable, "-m", "service.cli", "catalog", "diff", "--help"]
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, capture_output=True, check=True, timeout=120)
    return time.perf_counter() - started


def checks(engine: Engine, old: Catalog, report: dict[str, Any]) -> dict[str, Any]:
    impact = report["impact"]
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT id, tier, interval, seats, addons, currency, status, "
                "current_period_start, current_period_end, catalog_version, limits_version "
                "FROM accounts WHERE status <> 'canceled'"
            )
        ).all()
    account_sum = sum(account_mrr(old, AccountColumns(*row)).minor for row in rows)
    tier, interval, old_price, new_price = RAISED
    raised = sum(
        1 for r in rows if r.tier == tier and r.interval == interval and r.status == "active"
    )
    tier_changes = sum(t["mrr_change"]["amount_minor"] for t in impact["tiers"])
    return {
        "live_accounts": len(rows),
        "distinct_plans": impact["distinct_plans"],
        "mrr_before_minor": impact["mrr_before"]["amount_minor"],
        "mrr_change_minor": impact["mrr_change"]["amount_minor"],
        "tier_changes_sum_to_total": tier_changes == impact["mrr_change"]["amount_minor"],
        "before_equals_account_mrr": impact["mrr_before"]["amount_minor"] == account_sum,
        "change_equals_raise": impact["mrr_change"]["amount_minor"]
        == raised * (new_price - old_price),
        "accounts_match": impact["accounts"] == len(rows),
    }


def seed_ledger(engine: Engine, old: Catalog) -> None:
    """Each clone's `new` movement, as the PUT that made it would have booked (the template's
    own is there already), so the ledger stands at every account's MRR."""
    factory = make_session_factory(engine)
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT id, tier, interval, seats, addons, currency, status, "
                "current_period_start, current_period_end, catalog_version, limits_version "
                "FROM accounts WHERE id <> 'tmpl' ORDER BY id"
            )
        ).all()
    movements = []
    for row in rows:
        mrr = account_mrr(old, AccountColumns(*row)).minor
        if mrr:
            snapshot = PlanSnapshot(row.tier, row.seats, row.addons, version=row.catalog_version)
            movements.append(
                MovementRequest(
                    account_id=row.id,
                    currency=row.currency,
                    mrr_before=0,
                    mrr_after=mrr,
                    before=None,
                    after=snapshot,
                    source=Source.ADMIN,
                    idempotency_key=f"bench:seed:{row.id}",
                    occurred_at=SEEDED_AT,
                    catalog_version=row.catalog_version,
                    recorded_at=SEEDED_AT,
                )
            )
    for start in range(0, len(movements), 5_000):
        with factory() as session, session.begin():
            record_movements(session, movements[start : start + 5_000])


def migration_json(report: MigrationReport) -> dict[str, Any]:
    """What a dry run promises and an applied run does."""
    return {
        "moved": report.moved,
        "not_moved": len(report.not_moved),
        "already": report.already,
        "mrr_before": report.mrr_before.minor,
        "mrr_after": report.mrr_after.minor,
        "amount_due": report.amount_due.minor,
        "tiers": [
            (
                t.tier,
                t.moved,
                t.not_moved,
                t.mrr_before.minor,
                t.mrr_after.minor,
                t.amount_due.minor,
            )
            for t in report.tier_rows()
        ],
    }


def migrate_figures(engine: Engine, old: Catalog) -> dict[str, Any]:
    seed_ledger(engine, old)
    history = load_catalogs(REPO / "pricing_catalog")
    factory = make_session_factory(engine)
    request = MigrationRequest(MIGRATED_TO, Timing.immediate)
    started = time.perf_counter()
    dry = migrate_accounts(factory, history, request, MIGRATED_AT, apply=False)
    dry_s = time.perf_counter() - started
    started = time.perf_counter()
    applied = migrate_accounts(factory, history, request, MIGRATED_AT, apply=True)
    applied_s = time.perf_counter() - started
    again = migrate_accounts(factory, history, request, MIGRATED_AT, apply=True)
    with engine.connect() as connection:
        ledger_sum = connection.execute(
            text("SELECT COALESCE(SUM(mrr_delta_minor), 0) FROM ledger_entries")
        ).scalar_one()
        rows = connection.execute(
            text(
                "SELECT id, tier, interval, seats, addons, currency, status, "
                "current_period_start, current_period_end, catalog_version, limits_version "
                "FROM accounts"
            )
        ).all()
        on_target = sum(1 for r in rows if r.catalog_version == MIGRATED_TO)
    mrr_after = sum(account_mrr(history.latest, AccountColumns(*row)).minor for row in rows)
    december = nrr_report(
        engine,
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
        Granularity.MONTH,
    ).periods[0]
    uplift = december.expansion_by_engine[LedgerEngine.PRICE_UPLIFT]
    return {
        "migrate_accounts": applied.considered,
        "migrate_moved": applied.moved,
        "migrate_dry_run_s": round(dry_s, 2),
        "migrate_apply_s": round(applied_s, 2),
        "migrate_accounts_per_s": round(applied.moved / applied_s),
        "migrate_ledger_entries": applied.ledger_entries,
        "migrate_mrr_change_minor": applied.mrr_change.minor,
        "migrate_amount_due_minor": applied.amount_due.minor,
        "migrate_dry_run_equals_applied": migration_json(dry) == migration_json(applied),
        "migrate_ledger_sum_equals_mrr": ledger_sum == mrr_after,
        "migrate_nrr_price_uplift_equals_change": uplift == applied.mrr_change.minor,
        "migrate_all_moved_once": on_target == applied.moved + applied.already
        and again.moved == 0
        and again.ledger_entries == 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3, help="Timed diffs; the best is kept")
    parser.add_argument(
        "--no-migrate", action="store_true", help="Measure the diff only (the migration moves)"
    )
    arguments = parser.parse_args()
    figures: dict[str, Any] = {
        "accounts": arguments.accounts,
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
    }
    old = load_catalog(OLD_PATH)
    with tempfile.TemporaryDirectory() as folder, fresh_database("postgres") as url:
        new_path = new_catalog(Path(folder))
        new = load_catalog(new_path)
        engine = make_engine(url)
        started = time.perf_counter()
        seed(url, engine, arguments.accounts, old)
        figures["seed_s"] = round(time.perf_counter() - started, 1)
        timings = []
        for _ in range(arguments.rounds):
            started = time.perf_counter()
            diff = diff_against_accounts(engine, old, new)
            timings.append(time.perf_counter() - started)
        best = min(timings)
        figures["diff_s"] = round(best, 3)
        figures["diff_accounts_per_s"] = round(diff.impact.accounts / best)
        elapsed, report = command_seconds(url, OLD_PATH, new_path)
        figures["diff_command_s"] = round(elapsed, 2)
        figures["command_startup_s"] = round(startup_seconds(), 2)
        figures.update(checks(engine, old, report))
        if not arguments.no_migrate:
            figures.update(migrate_figures(engine, old))
        engine.dispose()
    print_result(figures)


if __name__ == "__main__":
    main()
