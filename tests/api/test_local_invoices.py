"""Local billing invoices what it later credits: the first period at the first PUT, nothing
during a free trial, and the trial's end as a renewal that books `new` MRR."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from service.adapters.billing_tables import InvoiceRow
from tests.api.test_upgrades import ACME, assert_ledger_matches_mrr, ledger_rows, upgrade
from tests.fakes.clock import FakeClock

GROWTH_7 = 9_900 + 2 * 1_500  # base with 5 seats included, two more
GROWTH_9 = 9_900 + 4 * 1_500


def invoices(db: Engine) -> list[tuple[str, int, int, str]]:
    with Session(db) as session:
        rows = session.scalars(select(InvoiceRow).order_by(InvoiceRow.created_at, InvoiceRow.id))
        return [
            (row.billing_reason, row.amount_due_minor, row.amount_paid_minor, row.status)
            for row in rows
        ]


def test_the_first_put_invoices_the_first_period_that_later_changes_credit(
    client: TestClient, admin_headers: dict[str, str], clock: FakeClock, db: Engine
) -> None:
    assert client.put("/v1/accounts/acme", json=ACME, headers=admin_headers).status_code == 201
    assert invoices(db) == [("subscription_create", GROWTH_7, GROWTH_7, "paid")]
    # Half-way through, two more seats: the credit is half of what that invoice charged.
    clock.advance(days=15)
    body = upgrade(client, admin_headers, {"target": {"seats": 9}}).json()
    credits = [amount for amount in proration_amounts(db) if amount < 0]
    assert 0 < -sum(credits) <= GROWTH_7  # never more than the first invoice charged
    assert invoices(db)[1][0] == "subscription_update"
    assert body["amount_charged"]["amount_minor"] == invoices(db)[1][2]
    # A later PUT states the plan; it is a correction, not a sale, and invoices nothing.
    client.put("/v1/accounts/acme", json={**ACME, "seats": 8}, headers=admin_headers)
    assert len(invoices(db)) == 2


def proration_amounts(db: Engine) -> list[int]:
    from service.adapters.billing_tables import InvoiceLineRow

    with Session(db) as session:
        return list(
            session.scalars(select(InvoiceLineRow.amount_minor).where(InvoiceLineRow.proration))
        )


def test_a_trial_is_charged_nothing_and_its_end_books_new_mrr(
    client: TestClient, admin_headers: dict[str, str], clock: FakeClock, db: Engine
) -> None:
    trial_end = clock.now() + timedelta(days=14)
    trial = {**ACME, "status": "trialing", "current_period_end": trial_end.isoformat()}
    assert client.put("/v1/accounts/acme", json=trial, headers=admin_headers).status_code == 201
    clock.advance(days=3)
    quote = client.post(
        "/v1/accounts/acme/quotes", json={"target": {"seats": 9}}, headers=admin_headers
    ).json()
    assert quote["amount_due_now"]["amount_minor"] == 0 and quote["lines"] == []
    assert quote["next_invoice_date"] == trial_end.isoformat().replace("+00:00", "Z")
    body = upgrade(client, admin_headers, {"target": {"seats": 9}}).json()
    assert body["amount_charged"]["amount_minor"] == 0
    assert body["ledger_entry_id"] is None and ledger_rows(db) == []
    # The trial's first invoice and the change's, both for 0 (as Stripe bills a trial).
    assert invoices(db) == [
        ("subscription_create", 0, 0, "paid"),
        ("subscription_update", 0, 0, "paid"),
    ]

    clock.advance(days=12)  # past the trial's end: the renewal worker's round
    from service.services.renewals import renew_due_accounts

    state = client.app.state  # type: ignore[attr-defined]
    renew_due_accounts(state.session_factory, state.catalog, state.billing_gateways, clock.now())
    account = client.get("/v1/accounts/acme", headers=admin_headers).json()
    assert account["status"] == "active" and account["seats"] == 9
    assert invoices(db)[-1] == ("subscription_cycle", GROWTH_9, GROWTH_9, "paid")
    # A new billing cycle begins when the trial ends: the first paid period is a whole month.
    assert account["current_period_start"] == trial_end.isoformat().replace("+00:00", "Z")
    assert account["current_period_end"] == "2026-12-24T12:00:00Z"
    [entry] = ledger_rows(db)
    assert (entry.kind, entry.mrr_delta_minor) == ("new", GROWTH_9)
    assert entry.occurred_at == trial_end
    assert_ledger_matches_mrr(client, admin_headers, db)


def test_a_negative_change_is_kept_as_credit_that_the_next_renewal_uses_first(
    client: TestClient, admin_headers: dict[str, str], clock: FakeClock, db: Engine
) -> None:
    """Starter yearly (290.00) to Growth monthly (99.00) at the start of the year: the unused
    year is credited against the month, a total of -191.00. It is owed to the customer: the
    account shows it, and the renewals use it before charging the card."""
    yearly = {"tier": "starter", "interval": "year", "seats": 3}
    assert client.put("/v1/accounts/acme", json=yearly, headers=admin_headers).status_code == 201
    body = upgrade(client, admin_headers, {"target": {"tier": "growth", "interval": "month"}})
    assert body.status_code == 200, body.text
    change = body.json()
    assert change["amount_charged"]["amount_minor"] == 0
    account = client.get("/v1/accounts/acme", headers=admin_headers).json()
    assert account["credit_balance"] == {"amount_minor": 19_100, "currency": "USD"}
    assert ("subscription_update", -19_100, 0, "paid") in invoices(db)

    from service.services.renewals import renew_due_accounts

    state = client.app.state  # type: ignore[attr-defined]
    charged = []
    for _ in range(2):  # two monthly renewals: 99.00 from the credit, then the rest, then card
        clock.advance(days=31)
        renew_due_accounts(
            state.session_factory, state.catalog, state.billing_gateways, clock.now()
        )
        with Session(db) as session:
            last = session.scalars(
                select(InvoiceRow).order_by(InvoiceRow.created_at.desc()).limit(1)
            ).one()
            charged.append(
                (last.amount_due_minor, last.credit_applied_minor, last.amount_paid_minor)
            )
    assert charged == [(9_900, 9_900, 0), (9_900, 9_200, 700)]
    account = client.get("/v1/accounts/acme", headers=admin_headers).json()
    assert account["credit_balance"]["amount_minor"] == 0
