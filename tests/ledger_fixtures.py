"""Helpers for the ledger tests: write movements, seed histories, check Σ deltas == MRR."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import func, select, text

from service.adapters.catalog_loader import load_catalog
from service.adapters.db import make_session_factory, transaction
from service.adapters.ledger_tables import LedgerEntryRow
from service.adapters.orm import AccountRow
from service.domain.catalog import Catalog
from service.domain.ledger import Attribution, Engine, Motion, PlanSnapshot, Source
from service.services.account_state import account_mrr
from service.services.ledger import record_movement
from tests.conftest import CATALOG_PATH

requires_postgres = pytest.mark.postgres


def on_postgres(engine: sa.Engine) -> bool:
    return engine.dialect.name == "postgresql"


def skip_unless_postgres(engine: sa.Engine) -> None:
    if not on_postgres(engine):
        pytest.skip("needs PostgreSQL (UPSHIFT_TEST_DATABASE_URL)")


def catalog() -> Catalog:
    return load_catalog(CATALOG_PATH)


def at(year: int, month: int, day: int = 1, hour: int = 12) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


# Plan snapshots that make engine_for_change pick each engine.
BASE = PlanSnapshot("growth", 5)
SNAPSHOT_FOR = {
    Engine.SEAT: PlanSnapshot("growth", 8),
    Engine.UPSELL: PlanSnapshot("business", 10),
    Engine.ADDON: PlanSnapshot("growth", 5, {"api_pack": 1}),
}


@dataclass(frozen=True)
class Step:
    """One movement of a scripted history: account goes to `after` MRR at `when`."""

    account: str
    after: int
    when: datetime
    engine: Engine | None = None
    currency: str = "USD"
    offer_id: str | None = None
    days_since_activation: int | None = None


def record(session: Any, step: Step, *, before: int, key: str) -> LedgerEntryRow | None:
    """Record one scripted step; the engine is produced through the plan snapshots."""
    after_plan = SNAPSHOT_FOR.get(step.engine, BASE) if step.engine else BASE
    strategic = step.engine is Engine.STRATEGIC
    return record_movement(
        session,
        account_id=step.account,
        currency=step.currency,
        mrr_before=before,
        mrr_after=step.after,
        before=BASE if before else None,
        after=after_plan if step.after else None,
        source=Source.SELF_SERVE_OFFER if step.offer_id else Source.API,
        idempotency_key=key,
        occurred_at=step.when,
        catalog_version="test",
        attribution=Attribution(
            motion=Motion.SELF_SERVE,
            offer_id=step.offer_id,
            days_since_activation=step.days_since_activation,
        ),
        strategic=strategic,
    )


def seed(
    engine: sa.Engine, steps: Iterable[Step], *, opening: dict[tuple[str, str], int] | None = None
) -> list[LedgerEntryRow]:
    """Record the steps in order in one transaction, each from the account's current MRR
    (`opening` gives MRR already in the ledger, e.g. from an account PUT)."""
    balances = dict(opening or {})
    rows: list[LedgerEntryRow] = []
    with transaction(make_session_factory(engine)) as session:
        for number, step in enumerate(steps):
            key = (step.account, step.currency)
            row = record(session, step, before=balances.get(key, 0), key=f"seed:{number}")
            balances[key] = step.after
            if row is not None:
                rows.append(row)
    return rows


def ledger_sums(engine: sa.Engine, account_id: str) -> dict[str, int]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(LedgerEntryRow.currency, func.sum(LedgerEntryRow.mrr_delta_minor))
            .where(LedgerEntryRow.account_id == account_id)
            .group_by(LedgerEntryRow.currency)
        )
        return {currency: int(total) for currency, total in rows if total}


def assert_ledger_matches_mrr(engine: sa.Engine, account_id: str) -> None:
    """The invariant: Σ ledger deltas of an account == its current MRR, per currency."""
    with make_session_factory(engine)() as session:
        row = session.get(AccountRow, account_id)
        assert row is not None, f"no account {account_id}"
        mrr = account_mrr(catalog(), row)
    expected = {mrr.currency: mrr.minor} if mrr.minor else {}
    assert ledger_sums(engine, account_id) == expected


def entry_count(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return connection.scalar(text("SELECT count(*) FROM ledger_entries")) or 0
