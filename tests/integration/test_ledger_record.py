"""record_movement on a real database: classification, idempotency, guards and the hash chain."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from service.adapters.db import make_session_factory, transaction
from service.adapters.ledger_tables import LedgerEntryRow
from service.domain.ledger import (
    GENESIS_HASH,
    Attribution,
    Motion,
    PlanSnapshot,
    Source,
    chain_hash,
)
from service.services.ledger import (
    IdempotencyKeyReused,
    LedgerOutOfOrder,
    LedgerOutOfStep,
    MovementRequest,
    ledger_balances,
    record_account_state,
    record_movement,
    record_movements,
)
from service.services.ledger_entries import rebuild_rollup, verify_ledger
from tests.ledger_fixtures import at, entry_count

GROWTH_5 = PlanSnapshot("growth", 5)
GROWTH_8 = PlanSnapshot("growth", 8)
BUSINESS_10 = PlanSnapshot("business", 10)
WITH_PACK = PlanSnapshot("growth", 5, {"api_pack": 1})


def move(session, mrr_before: int, mrr_after: int, key: str, **overrides):
    arguments = {
        "account_id": "acme",
        "currency": "USD",
        "mrr_before": mrr_before,
        "mrr_after": mrr_after,
        "before": GROWTH_5 if mrr_before else None,
        "after": GROWTH_5 if mrr_after else None,
        "source": Source.API,
        "idempotency_key": key,
        "occurred_at": at(2026, 1),
        "catalog_version": "2026-11-01.1",
    }
    return record_movement(session, **(arguments | overrides))


@pytest.fixture
def factory(db: Engine):
    return make_session_factory(db)


def test_a_lifecycle_is_classified_at_write_time(factory, db: Engine) -> None:
    with transaction(factory) as session:
        new = move(session, 0, 9_900, "k1")
        seat = move(session, 9_900, 12_900, "k2", before=GROWTH_5, after=GROWTH_8)
        upsell = move(session, 12_900, 29_900, "k3", before=GROWTH_8, after=BUSINESS_10)
        down = move(session, 29_900, 9_900, "k4", before=BUSINESS_10, after=GROWTH_5)
        churn = move(session, 9_900, 0, "k5")
        back = move(session, 0, 14_800, "k6")
        addon = move(session, 14_800, 19_700, "k7", before=GROWTH_5, after=WITH_PACK)
    kinds = [(row.kind, row.engine, row.mrr_delta_minor) for row in (new, seat, upsell, down)]
    assert kinds == [
        ("new", None, 9_900),
        ("expansion", "seat", 3_000),
        ("expansion", "upsell", 17_000),
        ("contraction", "upsell", -20_000),
    ]
    assert (churn.kind, churn.engine, churn.mrr_delta_minor) == ("churn", None, -9_900)
    # The account paid before, so coming back from 0 is a reactivation, not new MRR.
    assert (back.kind, back.engine) == ("reactivation", None)
    assert (addon.kind, addon.engine) == ("expansion", "addon")
    with factory() as session:
        assert ledger_balances(session, "acme") == {"USD": 19_700}


def test_no_movement_writes_nothing(factory, db: Engine) -> None:
    with transaction(factory) as session:
        assert move(session, 0, 0, "k1") is None
        move(session, 0, 9_900, "k2")
        assert move(session, 9_900, 9_900, "k3", after=GROWTH_8) is None
    assert entry_count(db) == 1


def test_the_same_key_returns_the_stored_row(factory, db: Engine) -> None:
    with transaction(factory) as session:
        first = move(session, 0, 9_900, "upgrade:1")
    with transaction(factory) as session:
        again = move(session, 0, 9_900, "upgrade:1")
        assert again is not None and first is not None and again.id == first.id
        with pytest.raises(IdempotencyKeyReused):
            move(session, 0, 5_000, "upgrade:1", account_id="other")
    assert entry_count(db) == 1


def test_a_movement_must_start_at_the_ledger_balance(factory) -> None:
    with transaction(factory) as session:
        move(session, 0, 9_900, "k1")
    with transaction(factory) as session, pytest.raises(LedgerOutOfStep) as raised:
        move(session, 12_000, 15_000, "k2")
    assert raised.value.status == 409 and raised.value.field == "mrr_before"


def test_a_movement_cannot_be_backdated_before_the_last_one(factory) -> None:
    with transaction(factory) as session:
        move(session, 0, 9_900, "k1", occurred_at=at(2026, 3))
    with transaction(factory) as session, pytest.raises(LedgerOutOfOrder):
        move(session, 9_900, 12_900, "k2", occurred_at=at(2026, 2), after=GROWTH_8)
    with transaction(factory) as session:  # the same instant is fine: ledger order breaks ties
        assert move(session, 9_900, 12_900, "k3", occurred_at=at(2026, 3), after=GROWTH_8)


def test_rows_chain_their_hashes(factory, db: Engine) -> None:
    with transaction(factory) as session:
        move(session, 0, 9_900, "k1")
        move(session, 9_900, 12_900, "k2", after=GROWTH_8, occurred_at=at(2026, 1) + timedelta(1))
        move(
            session,
            0,
            5_000,
            "k3",
            account_id="globex",
            attribution=Attribution(
                motion=Motion.SELF_SERVE, offer_id="off_1", signal_ids=("b", "a")
            ),
        )
    with factory() as session:
        rows = list(session.scalars(select(LedgerEntryRow).order_by(LedgerEntryRow.id)))
    assert rows[0].prev_hash == GENESIS_HASH
    for earlier, later in itertools.pairwise(rows):
        assert later.prev_hash == earlier.hash
    assert rows[2].signal_ids == ["a", "b"]  # sorted by the domain, so equal sets hash equal
    assert chain_hash(None, _record_of(rows[0])) == rows[0].hash
    with db.connect() as connection:
        report = verify_ledger(connection)
    assert report.ok and report.rows_checked == 3 and report.head_hash == rows[-1].hash


def _record_of(row: LedgerEntryRow) -> dict:
    return {
        "idempotency_key": row.idempotency_key,
        "account_id": row.account_id,
        "kind": row.kind,
        "engine": row.engine,
        "mrr_before": row.mrr_before_minor,
        "mrr_after": row.mrr_after_minor,
        "delta": row.mrr_delta_minor,
        "currency": row.currency,
        "source": row.source,
        "offer_id": row.offer_id,
        "signal_ids": row.signal_ids,
        "motion": row.motion,
        "days_since_activation": row.days_since_activation,
        "occurred_at": row.occurred_at,
        "stripe_invoice_id": row.stripe_invoice_id,
        "stripe_subscription_id": row.stripe_subscription_id,
        "catalog_version": row.catalog_version,
    }


def test_an_unexplained_expansion_is_strategic_and_defaults_name_the_motion(factory) -> None:
    with transaction(factory) as session:
        move(session, 0, 9_900, "k1", source=Source.ADMIN)
        # Same plan, more MRR (a yearly plan switched to monthly): no self-serve engine did it.
        price_only = move(session, 9_900, 10_900, "k2", before=GROWTH_5, after=GROWTH_5)
        deal = move(session, 10_900, 50_000, "k3", strategic=True)
    assert (price_only.engine, price_only.motion) == ("strategic", "self_serve")
    assert (deal.engine, deal.motion) == ("strategic", "sales_assisted")


def test_account_state_churns_mrr_left_in_another_currency(factory) -> None:
    with transaction(factory) as session:
        move(session, 0, 9_900, "k1", currency="EUR")
        rows = record_account_state(
            session,
            account_id="acme",
            currency="USD",
            mrr_after=12_000,
            before=GROWTH_5,
            after=GROWTH_8,
            source=Source.ADMIN,
            idempotency_key="admin:put:acme:2",
            occurred_at=at(2026, 2),
            catalog_version="v",
        )
        assert [(row.currency, row.kind, row.idempotency_key) for row in rows] == [
            ("EUR", "churn", "admin:put:acme:2:EUR"),
            ("USD", "reactivation", "admin:put:acme:2"),  # the account has paid before
        ]
        assert ledger_balances(session, "acme") == {"USD": 12_000}


def _history(prefix: str) -> list[MovementRequest]:
    """Movements of three accounts in two currencies across month and quarter starts: new,
    expansion, contraction, churn and reactivation, some in the same period as each other."""
    plans = [0, 9_900, 14_400, 4_900, 0, 2_900, 29_900]
    movements = []
    for account in range(3):
        currency = "EUR" if account == 2 else "USD"
        mrr = 0
        for step, after in enumerate(plans[account:] + plans[:account]):
            if after == mrr:
                continue
            movements.append(
                MovementRequest(
                    account_id=f"{prefix}-{account}",
                    currency=currency,
                    mrr_before=mrr,
                    mrr_after=after,
                    before=GROWTH_5 if mrr else None,
                    after=(GROWTH_8 if after > mrr else GROWTH_5) if after else None,
                    source=Source.API,
                    idempotency_key=f"{prefix}:{account}:{step}",
                    # 2026-03-20 onwards, 12 days apart: month and quarter starts fall between
                    occurred_at=at(2026, 3, 20) + timedelta(days=12 * step + account),
                    catalog_version="2026-11-01.1",
                )
            )
            mrr = after
    return sorted(movements, key=lambda movement: movement.occurred_at)


def _written(db: Engine, prefix: str) -> list[tuple]:
    with Session(db) as session:
        rows = session.scalars(
            select(LedgerEntryRow)
            .where(LedgerEntryRow.account_id.like(f"{prefix}-%"))
            .order_by(LedgerEntryRow.id)
        )
        return [
            (
                row.account_id[len(prefix) :],
                row.kind,
                row.engine,
                row.mrr_delta_minor,
                row.occurred_at,
                row.currency,
            )
            for row in rows
        ]


def test_a_batch_records_what_the_same_movements_record_one_by_one(factory, db: Engine) -> None:
    with transaction(factory) as session:
        batch = record_movements(session, _history("batch"))
    for movement in _history("single"):
        with transaction(factory) as session:
            record_movements(session, [movement])
    assert all(row is not None for row in batch)
    assert _written(db, "batch") == _written(db, "single")
    assert len(_written(db, "batch")) == len(_history("batch"))
    with db.connect() as connection:
        assert verify_ledger(connection).ok
    with db.connect() as connection:
        # The rollup the writes kept equals one rebuilt from the entries (cohort shares and
        # capped losses included), for the batch as for the single appends.
        assert rebuild_rollup(connection, keep=False).matched
    # A batch replayed returns the stored rows and appends nothing.
    with transaction(factory) as session:
        again = record_movements(session, _history("batch"))
    assert [row.id for row in again] == [row.id for row in batch]  # type: ignore[union-attr]
    assert len(_written(db, "batch")) == len(batch)


def test_a_batch_with_a_movement_out_of_step_writes_nothing(factory, db: Engine) -> None:
    history = _history("bad")
    broken = [*history[:3], replace(history[3], mrr_before=history[3].mrr_before + 1)]
    with pytest.raises(LedgerOutOfStep), transaction(factory) as session:
        record_movements(session, broken)
    assert entry_count(db) == 0
