"""The SQL-aggregated NRR report equals domain.ledger's movement-by-movement roll-forward."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select, text

from service.adapters.db import make_session_factory
from service.adapters.ledger_report_sql import (
    month_flow_rows,
    rebuild_month_flows,
)
from service.adapters.ledger_tables import LedgerEntryRow
from service.cli import main
from service.domain.ledger import (
    Engine as LedgerEngine,
)
from service.domain.ledger import (
    Granularity,
    Movement,
    MovementKind,
    period_buckets,
    rollforward_reports,
)
from service.services.reports import (
    period_reports_from_sql,
)
from tests.ledger_fixtures import Step, seed

START = datetime(2025, 1, 1, tzinfo=UTC)
ENGINES = [*LedgerEngine, None]


def random_history(
    rng: random.Random, accounts: int = 25, churn: float = 0.15, max_gap_days: int = 120
) -> list[Step]:
    """Accounts that start, grow, shrink, churn and return over two years, in two currencies."""
    per_account = []
    for number in range(accounts):
        currency = "USD" if number % 4 else "EUR"
        moment = START + timedelta(days=rng.randrange(0, 200), seconds=rng.randrange(86_400))
        mrr = 0
        steps = []
        for _ in range(rng.randrange(1, 9)):
            choice = rng.random()
            target = 0 if mrr and choice < churn else rng.randrange(1, 50) * 1_000
            if target != mrr:
                engine = rng.choice(ENGINES) if mrr and target else None
                steps.append(Step(f"a{number}", target, moment, engine, currency))
                mrr = target
            moment += timedelta(
                days=rng.randrange(0, max_gap_days), seconds=rng.randrange(1, 86_400)
            )
        per_account.append(steps)
    # Interleave the accounts (each keeps its own order), as concurrent traffic would.
    merged: list[Step] = []
    while any(per_account):
        pending = [steps for steps in per_account if steps]
        merged.append(rng.choice(pending).pop(0))
    return merged


def domain_reports(db: Engine, start: datetime, end: datetime, granularity: Granularity):
    with make_session_factory(db)() as session:
        rows = list(session.scalars(select(LedgerEntryRow).order_by(LedgerEntryRow.id)))
    opening: dict[tuple[str, str], int] = {}
    movements = []
    for row in rows:
        key = (row.account_id, row.currency)
        if row.occurred_at < start:
            opening[key] = row.mrr_after_minor
        elif row.occurred_at < end:
            movements.append(
                Movement(
                    account_id=row.account_id,
                    kind=MovementKind(row.kind),
                    engine=None if row.engine is None else LedgerEngine(row.engine),
                    mrr_before=row.mrr_before_minor,
                    mrr_after=row.mrr_after_minor,
                    currency=row.currency,
                    occurred_at=row.occurred_at,
                )
            )
    periods = period_buckets(start, end, granularity)
    return rollforward_reports(movements, opening, periods)


@pytest.mark.parametrize("seed_number", [1, 2, 3])
@pytest.mark.parametrize(
    ("start", "end", "granularity"),
    [
        (datetime(2025, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC), Granularity.MONTH),
        (datetime(2025, 3, 17, tzinfo=UTC), datetime(2026, 8, 9, tzinfo=UTC), Granularity.QUARTER),
        (datetime(2025, 6, 1, 12, tzinfo=UTC), datetime(2025, 9, 1, tzinfo=UTC), Granularity.MONTH),
        # Whole quarters from a quarter start, the last one cut at a month end (rollup)
        (datetime(2025, 4, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC), Granularity.QUARTER),
        # Months starting inside a quarter (rollup for months, entries for quarters)
        (datetime(2025, 5, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC), Granularity.MONTH),
        (datetime(2025, 5, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC), Granularity.QUARTER),
    ],
)
@pytest.mark.parametrize("use_rollup", [True, False])
def test_sql_report_equals_the_domain_roll_forward(
    db: Engine,
    seed_number: int,
    start: datetime,
    end: datetime,
    granularity: Granularity,
    use_rollup: bool,
) -> None:
    seed(db, random_history(random.Random(seed_number)))
    from_sql = period_reports_from_sql(db, start, end, granularity, use_rollup=use_rollup)
    expected = domain_reports(db, start, end, granularity)
    assert expected, "the history should produce some periods"
    assert from_sql == expected


def test_any_range_from_the_rollup_equals_the_domain_roll_forward(db: Engine) -> None:
    """Ranges that start and end on and off month and quarter boundaries, inside one month,
    across a year: the rollup-and-entries report equals the movement-by-movement one."""
    seed(db, random_history(random.Random(9), accounts=40))
    rng = random.Random(10)
    moments = [START + timedelta(days=days) for days in range(-40, 760, 17)]
    moments += [datetime(2025 + month // 12, month % 12 + 1, 1, tzinfo=UTC) for month in range(25)]
    moments = sorted(set(moments))
    for _ in range(30):
        start, end = sorted(rng.sample(moments, 2))
        for granularity in Granularity:
            expected = domain_reports(db, start, end, granularity)
            assert period_reports_from_sql(db, start, end, granularity) == expected, (start, end)


@pytest.mark.parametrize("use_rollup", [True, False])
def test_a_cohort_account_loses_at_most_its_starting_mrr_in_sql_too(
    db: Engine, use_rollup: bool
) -> None:
    """Starter 2,900 (the only GBP account) churns, comes back and churns again within
    February: the SQL report (the rollup kept by each write, or the entries) counts its starting
    MRR lost once, NRR 0 not -1, exactly as the domain does; so do accounts that churn and
    return within days."""

    def day(month: int, number: int) -> datetime:
        return datetime(2025, month, number, 12, tzinfo=UTC)

    story = [
        Step("starter", 2_900, day(1, 5), None, "GBP"),
        Step("starter", 0, day(2, 3), None, "GBP"),
        Step("starter", 2_900, day(2, 10), None, "GBP"),
        Step("starter", 0, day(2, 20), None, "GBP"),
    ]
    seed(db, story + random_history(random.Random(11), accounts=40, churn=0.5, max_gap_days=6))
    start, end = datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 4, 1, tzinfo=UTC)
    reports = period_reports_from_sql(db, start, end, Granularity.MONTH, use_rollup=use_rollup)
    [february] = [r for r in reports if r.currency == "GBP" and r.period.start.month == 2]
    assert (february.churn, february.reactivation) == (5_800, 2_900)
    assert february.nrr == Decimal("0.0000") and february.grr == Decimal("0.0000")

    end = datetime(2025, 12, 1, tzinfo=UTC)
    for granularity in Granularity:
        from_sql = period_reports_from_sql(db, start, end, granularity, use_rollup=use_rollup)
        assert from_sql == domain_reports(db, start, end, granularity)
        assert all(report.nrr is None or report.nrr >= 0 for report in from_sql)


def test_the_rollup_kept_by_each_write_equals_a_rebuild_from_the_entries(db: Engine) -> None:
    seed(db, random_history(random.Random(7), accounts=40))
    with db.connect() as connection:
        kept = month_flow_rows(connection)
    assert kept, "the history should have rolled up some months"
    with db.begin() as connection:
        assert rebuild_month_flows(connection) == len(kept)
    with db.connect() as connection:
        assert month_flow_rows(connection) == kept


def test_cli_rollup_checks_and_rebuilds(db: Engine, database_url: str, monkeypatch) -> None:
    monkeypatch.setenv("UPSHIFT_DATABASE_URL", database_url)
    runner = CliRunner()
    seed(db, random_history(random.Random(8), accounts=10))
    ok = runner.invoke(main, ["ledger", "rollup"])
    assert ok.exit_code == 0, ok.output
    assert "ledger rollup matched the entries" in ok.output
    with db.begin() as connection:  # the rollup is derived, so it can be edited (and repaired)
        connection.execute(text("UPDATE ledger_month_flows SET total_minor = total_minor + 1"))
    bad = runner.invoke(main, ["ledger", "rollup"])
    assert bad.exit_code == 1
    assert "ledger rollup differed from the entries" in bad.output
    assert runner.invoke(main, ["ledger", "rollup"]).exit_code == 1  # a check changes nothing
    fixed = runner.invoke(main, ["ledger", "rollup", "--rebuild"])
    assert fixed.exit_code == 0 and "rebuilt" in fixed.output
    assert runner.invoke(main, ["ledger", "rollup"]).exit_code == 0
