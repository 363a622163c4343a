"""Renewals are set-based (a batch of accounts per few statements) and must do exactly what
renewing each account on its own does: the same invoices, plans, periods, credit, subscription
lines and ledger movements, whatever mix of histories a batch holds. And one account whose
renewal fails does not hold the others back."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from service.adapters.billing_tables import (
    InvoiceLineRow,
    InvoiceRow,
    ScheduledChangeRow,
    SubscriptionItemRow,
)
from service.adapters.db import make_session_factory
from service.adapters.ledger_tables import LedgerEntryRow
from service.adapters.orm import AccountRow
from service.adapters.repositories import AccountRepository
from service.services.account_state import account_mrr
from service.services.billing import local_gateways
from service.services.ledger_entries import verify_ledger
from service.services.renewals import renew_accounts, renew_due_accounts, renew_if_due
from tests.api.test_upgrades import ACME, upgrade
from tests.fakes.clock import FakeClock
from tests.ledger_fixtures import skip_unless_postgres

BOUNDARY_DAYS = 30  # ACME's first period ends 30 days after the test clock's start
# Each history twice: once per prefix. (PUT body, upgrade asked at mid-period or None)
HISTORIES: dict[str, tuple[dict[str, Any], dict[str, Any] | None]] = {
    "plain": (ACME, None),
    "downgrade": (ACME, {"target": {"seats": 5}}),  # scheduled for the period end
    "to-starter": (ACME, {"target": {"tier": "starter", "seats": 3}}),
    "year-to-month": (
        {"tier": "growth", "interval": "year", "seats": 6},
        {"target": {"interval": "month"}},
    ),
    "credit": (  # a negative change: credit the renewals use first
        {"tier": "starter", "interval": "year", "seats": 3},
        {"target": {"tier": "growth", "interval": "month"}},
    ),
    "addons": ({"tier": "growth", "seats": 8, "addons": {"api_pack": 1}}, None),
    "declines": (ACME, None),
}
DECLINING = {"a-declines", "b-declines"}


def make_histories(client: TestClient, headers: dict[str, str], clock: FakeClock) -> None:
    start = clock.now()
    trial_end = start + timedelta(days=BOUNDARY_DAYS)
    for prefix in ("a", "b"):
        for name, (body, _change) in HISTORIES.items():
            put = client.put(f"/v1/accounts/{prefix}-{name}", json=body, headers=headers)
            assert put.status_code == 201, put.text
        trial = {**ACME, "status": "trialing", "current_period_end": trial_end.isoformat()}
        assert client.put(f"/v1/accounts/{prefix}-trial", json=trial, headers=headers).is_success
    clock.advance(days=10)
    for prefix in ("a", "b"):
        for name, (_body, change) in HISTORIES.items():
            if change is not None:
                answer = upgrade(client, headers, change, key=f"k-{name}", acc=f"{prefix}-{name}")
                assert answer.status_code in (200, 202), answer.text


def snapshot(db: Engine, prefix: str) -> dict[str, Any]:
    """Everything renewal writes for the accounts with this prefix, account ids made generic."""

    def mine(account_id: str) -> bool:
        return account_id.startswith(f"{prefix}-")

    def name(account_id: str) -> str:
        return account_id.removeprefix(f"{prefix}-")

    with Session(db) as session:
        accounts = {
            name(row.id): (
                row.tier,
                row.interval,
                row.seats,
                row.addons,
                row.status,
                row.current_period_start,
                row.current_period_end,
                row.billing_cycle_anchor,
                row.credit_balance_minor,
                row.version,
            )
            for row in session.scalars(select(AccountRow))
            if mine(row.id)
        }
        invoices: dict[str, list[Any]] = {}
        for invoice in session.scalars(select(InvoiceRow).order_by(InvoiceRow.created_at)):
            if not mine(invoice.account_id):
                continue
            lines = session.scalars(
                select(InvoiceLineRow)
                .where(InvoiceLineRow.invoice_id == invoice.id)
                .order_by(InvoiceLineRow.id)
            )
            invoices.setdefault(name(invoice.account_id), []).append(
                (
                    invoice.billing_reason,
                    invoice.status,
                    invoice.amount_due_minor,
                    invoice.credit_applied_minor,
                    invoice.amount_paid_minor,
                    invoice.period_start,
                    invoice.period_end,
                    [(ln.key, ln.quantity, ln.amount_minor, ln.proration) for ln in lines],
                )
            )
        items = sorted(
            (name(i.account_id), i.key, i.quantity, i.billed_minor, i.billed_from)
            for i in session.scalars(select(SubscriptionItemRow))
            if mine(i.account_id)
        )
        ledger = [
            (name(e.account_id), e.kind, e.engine, e.mrr_delta_minor, e.occurred_at)
            for e in session.scalars(select(LedgerEntryRow).order_by(LedgerEntryRow.id))
            if mine(e.account_id)
        ]
        changes = sorted(
            (name(c.account_id), c.status)
            for c in session.scalars(select(ScheduledChangeRow))
            if mine(c.account_id)
        )
    return {
        "accounts": accounts,
        "invoices": invoices,
        "items": items,
        "ledger": sorted(ledger, key=lambda entry: (entry[0], entry[4])),
        "changes": changes,
    }


def test_a_batch_renews_exactly_as_each_account_alone(
    client: TestClient, admin_headers: dict[str, str], clock: FakeClock, db: Engine
) -> None:
    make_histories(client, admin_headers, clock)
    before = snapshot(db, "a")
    assert before == snapshot(db, "b")  # the two groups start the same
    assert ("downgrade", "pending") in before["changes"]
    # Three boundaries later: every account catches up three periods (or two after a trial).
    now = clock.advance(days=BOUNDARY_DAYS + 62 - 10)
    state = client.app.state  # type: ignore[attr-defined]
    factory = make_session_factory(db)
    gateways = local_gateways(DECLINING)
    with factory() as session, session.begin():
        group = list(
            session.scalars(
                select(AccountRow)
                .where(AccountRow.id.like("a-%"))
                .order_by(AccountRow.id)
                .with_for_update()
            )
        )
        gateway = gateways(session)
        renewed = renew_accounts(session, state.catalog, group, now, gateway)  # type: ignore[arg-type]
    for account_id in sorted(before["accounts"]):
        renew_if_due(factory, state.catalog, gateways, f"b-{account_id}", now)

    batch, alone = snapshot(db, "a"), snapshot(db, "b")
    assert batch == alone
    assert renewed == sum(len(v) for v in batch["invoices"].values()) - sum(
        len(v) for v in before["invoices"].values()
    )
    # What renewal should have done, spot-checked by hand:
    assert batch["accounts"]["downgrade"][2] == 5  # the scheduled downgrade applied
    assert ("year-to-month", "pending") in batch["changes"]  # its year has not ended
    assert batch["accounts"]["declines"][4] == "past_due"
    assert batch["accounts"]["trial"][4] == "active"
    assert ("downgrade", "applied") in batch["changes"]
    credit_invoices = [inv for inv in batch["invoices"]["credit"] if inv[0] == "subscription_cycle"]
    owed = before["accounts"]["credit"][8]
    assert 9_900 < owed < 2 * 9_900
    # The credit pays first: all of the first renewal, the rest of it the second, then the card.
    assert [(inv[3], inv[4]) for inv in credit_invoices] == [
        (9_900, 0),
        (owed - 9_900, 2 * 9_900 - owed),
        (0, 9_900),
    ]
    assert batch["accounts"]["credit"][8] == 0
    assert ("trial", "new", None, 12_900, before["accounts"]["trial"][6]) in batch["ledger"]

    # The ledger: one chain, and every account's Σ deltas equals its MRR.
    with db.connect() as connection:
        assert verify_ledger(connection).ok
    with Session(db) as session:
        for row in session.scalars(select(AccountRow)):
            total = session.scalar(
                select(func.coalesce(func.sum(LedgerEntryRow.mrr_delta_minor), 0)).where(
                    LedgerEntryRow.account_id == row.id
                )
            )
            assert total == account_mrr(state.catalog, row).minor, row.id


def test_an_account_whose_renewal_fails_is_left_alone_while_its_batch_renews(
    client: TestClient, admin_headers: dict[str, str], clock: FakeClock, db: Engine
) -> None:
    for i in range(6):
        assert client.put(f"/v1/accounts/ok-{i}", json=ACME, headers=admin_headers).is_success
    assert client.put("/v1/accounts/broken", json=ACME, headers=admin_headers).is_success
    clock.advance(days=10)
    upgrade(client, admin_headers, {"target": {"seats": 5}}, acc="broken")  # scheduled
    # The catalog no longer has the tier the change was scheduled to (an operator removed it).
    with db.begin() as connection:
        connection.execute(
            text("UPDATE scheduled_changes SET target = :t WHERE account_id = 'broken'"),
            {"t": '{"tier": "retired", "interval": "month", "seats": 5, "addons": {}}'},
        )
    now = clock.advance(days=25)
    state = client.app.state  # type: ignore[attr-defined]
    round_ = renew_due_accounts(
        make_session_factory(db), state.catalog, local_gateways(set()), now, batch_size=50
    )
    assert (round_.accounts, round_.renewals, round_.failed) == (6, 6, 1)
    with Session(db) as session:
        broken = session.get(AccountRow, "broken")
        assert broken is not None and broken.current_period_end <= now  # still due, untouched
        cycle = session.scalars(
            select(InvoiceRow.account_id).where(InvoiceRow.billing_reason == "subscription_cycle")
        ).all()
    assert sorted(cycle) == [f"ok-{i}" for i in range(6)]


def test_a_request_that_waited_for_the_lock_does_not_renew_again(
    client: TestClient, admin_headers: dict[str, str], clock: FakeClock, db: Engine
) -> None:
    """A request reads the account (due), then waits for its row lock while the worker renews
    it. Once it has the lock it must see the renewed row, not the copy it read before, or it
    would invoice the period a second time. (PostgreSQL: SQLite runs one writer at a time, so
    the worker cannot renew while a request's transaction is open.)"""
    skip_unless_postgres(db)
    assert client.put("/v1/accounts/acme", json=ACME, headers=admin_headers).is_success
    now = clock.advance(days=BOUNDARY_DAYS + 1)
    state = client.app.state  # type: ignore[attr-defined]
    factory = make_session_factory(db)
    gateways = local_gateways(set())
    with factory() as request:
        request.begin()
        stale = request.get(AccountRow, "acme")  # read before the worker's round
        assert stale is not None and stale.current_period_end <= now
        assert renew_due_accounts(factory, state.catalog, gateways, now).renewals == 1
        fresh = AccountRepository(request).get("acme", for_update=True)
        assert fresh is stale and fresh.current_period_end > now
        assert renew_accounts(request, state.catalog, [fresh], now, gateways(request)) == 0
        request.commit()
    with Session(db) as session:
        cycles = session.scalars(
            select(InvoiceRow).where(InvoiceRow.billing_reason == "subscription_cycle")
        ).all()
    assert len(cycles) == 1
