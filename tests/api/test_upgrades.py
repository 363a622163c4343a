"""POST /v1/accounts/{id}/upgrades on the local billing backend: once, exactly, or not at all."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from service.adapters.billing_tables import InvoiceRow
from service.adapters.ledger_tables import LedgerEntryRow
from tests.api.test_accounts import assert_problem
from tests.fakes.clock import FakeClock
from tests.live_server import live_server

ACME = {"tier": "growth", "interval": "month", "seats": 7}


@pytest.fixture
def acme(client: TestClient, admin_headers: dict[str, str], clock: FakeClock) -> dict[str, Any]:
    body = client.put("/v1/accounts/acme", json=ACME, headers=admin_headers).json()
    clock.advance(days=15)  # half of the 30-day period left
    return body


def upgrade(client: Any, headers: dict[str, str], body: dict, key: str | None = "k1", acc="acme"):
    extra = {"Idempotency-Key": key} if key else {}
    return client.post(f"/v1/accounts/{acc}/upgrades", json=body, headers={**headers, **extra})


def ledger_rows(db: Engine, account: str = "acme") -> list[LedgerEntryRow]:
    from sqlalchemy.orm import Session

    with Session(db) as session:
        return list(
            session.scalars(
                select(LedgerEntryRow)
                .where(LedgerEntryRow.account_id == account)
                .order_by(LedgerEntryRow.id)
            )
        )


def assert_ledger_matches_mrr(client: TestClient, headers: dict[str, str], db: Engine) -> None:
    """Σ ledger MRR deltas for the account equals its MRR from subscription state."""
    mrr = client.get("/v1/accounts/acme", headers=headers).json()["mrr"]["amount_minor"]
    assert sum(row.mrr_delta_minor for row in ledger_rows(db)) == mrr


def seat_offer_token(client: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    offers = client.get("/v1/accounts/acme/upgrade-offers", headers=headers).json()["offers"]
    return next(o for o in offers if o["engine"] == "seat")


def test_explicit_target_applies_once(
    client: TestClient, admin_headers: dict[str, str], acme: dict, db: Engine
) -> None:
    first = upgrade(client, admin_headers, {"target": {"seats": 9}})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["status"] == "applied" and body["change"] == "upgrade"
    assert body["amount_charged"] == {"amount_minor": 1_500, "currency": "USD"}
    assert body["new_mrr"]["amount_minor"] == 9_900 + 4 * 1_500
    account = client.get("/v1/accounts/acme", headers=admin_headers).json()
    assert account["seats"] == 9 and account["version"] == 2
    kinds = [(row.kind, row.engine, row.mrr_delta_minor) for row in ledger_rows(db)]
    assert kinds == [("new", None, 12_900), ("expansion", "seat", 3_000)]
    assert ledger_rows(db)[-1].id == body["ledger_entry_id"]

    again = upgrade(client, admin_headers, {"target": {"seats": 9}})
    assert again.status_code == 200 and again.json() == body
    assert again.headers["idempotent-replayed"] == "true"
    assert len(ledger_rows(db)) == 2
    assert_problem(
        upgrade(client, admin_headers, {"target": {"seats": 10}}), 422, "idempotency_key_reused"
    )
    assert_ledger_matches_mrr(client, admin_headers, db)


def test_second_change_credits_what_was_charged(
    client: TestClient, admin_headers: dict[str, str], acme: dict, clock: FakeClock
) -> None:
    assert upgrade(client, admin_headers, {"target": {"seats": 9}}).status_code == 200
    clock.advance(days=5)  # 10 of 30 days left
    quote = client.post(
        "/v1/accounts/acme/quotes", json={"target": {"seats": 10}}, headers=admin_headers
    ).json()
    # Credit of the 4-seat line billed 3,000 for 15 days: 10/15 of it; 5 seats for 10/30.
    assert [line["amount"]["amount_minor"] for line in quote["lines"]] == [-2_000, 2_500]
    done = upgrade(client, admin_headers, {"target": {"seats": 10}}, key="k2")
    assert done.json()["amount_charged"]["amount_minor"] == 500


def test_idempotency_key_is_required(
    client: TestClient, admin_headers: dict[str, str], acme: dict
) -> None:
    missing = upgrade(client, admin_headers, {"target": {"seats": 9}}, key=None)
    assert_problem(missing, 422, "validation_error", "Idempotency-Key")
    both = upgrade(client, admin_headers, {"target": {"seats": 9}, "offer_token": "x"})
    assert_problem(both, 422, "validation_error")


def test_declined_payment_changes_nothing(
    client: TestClient, app: FastAPI, admin_headers: dict[str, str], acme: dict, db: Engine
) -> None:
    app.state.declining_accounts.add("acme")
    declined = upgrade(client, admin_headers, {"target": {"seats": 9}})
    body = assert_problem(declined, 402, "card_declined")
    assert "declined" in body["detail"]
    assert client.get("/v1/accounts/acme", headers=admin_headers).json()["version"] == 1
    assert len(ledger_rows(db)) == 1
    from sqlalchemy.orm import Session

    with Session(db) as session:
        # The first period's invoice (from the PUT) and nothing for the declined change.
        reasons = session.scalars(select(InvoiceRow.billing_reason)).all()
        assert reasons == ["subscription_create"]
    app.state.declining_accounts.discard("acme")
    assert upgrade(client, admin_headers, {"target": {"seats": 9}}).status_code == 200


def test_downgrade_is_scheduled_without_a_ledger_entry(
    client: TestClient, admin_headers: dict[str, str], acme: dict, db: Engine
) -> None:
    response = upgrade(client, admin_headers, {"target": {"tier": "starter", "seats": 5}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "scheduled" and body["change"] == "downgrade"
    assert body["effective_at"] == "2026-12-10T12:00:00Z"
    assert body["amount_charged"]["amount_minor"] == 0
    assert client.get("/v1/accounts/acme", headers=admin_headers).json()["tier"] == "growth"
    assert len(ledger_rows(db)) == 1


def report_active_seats(client: TestClient, headers: dict[str, str], seats: int) -> None:
    event = {
        "event_id": str(uuid.uuid4()),
        "account_id": "acme",
        "feature": "seats",
        "quantity": seats,
        "action": "set",
        "timestamp": "2026-11-25T11:00:00Z",
    }
    response = client.post("/v1/usage", json={"events": [event]}, headers=headers)
    assert response.status_code in (200, 201, 207), response.text


def test_offer_token_upgrade_and_its_refusals(
    client: TestClient, admin_headers: dict[str, str], acme: dict, clock: FakeClock, db: Engine
) -> None:
    report_active_seats(client, admin_headers, 7)
    offer = seat_offer_token(client, admin_headers)
    token = offer["offer_token"]

    tampered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    assert_problem(
        upgrade(client, admin_headers, {"offer_token": tampered}), 422, "invalid_offer_token"
    )

    done = upgrade(client, admin_headers, {"offer_token": token})
    assert done.status_code == 200, done.text
    assert (
        done.json()["amount_charged"]["amount_minor"]
        == offer["quote"]["amount_due_now"]["amount_minor"]
    )
    assert done.json()["offer_id"] == offer["id"]
    entry = ledger_rows(db)[-1]
    assert (entry.kind, entry.engine, entry.offer_id) == ("expansion", "seat", offer["id"])
    assert entry.source == "self_serve_offer"

    # The same offer again under a new key: the account has moved on.
    assert_problem(
        upgrade(client, admin_headers, {"offer_token": token}, key="k2"), 409, "state_changed"
    )
    report_active_seats(client, admin_headers, 10)
    late = seat_offer_token(client, admin_headers)
    clock.advance(minutes=16)
    assert_problem(
        upgrade(client, admin_headers, {"offer_token": late["offer_token"]}, key="k3"),
        409,
        "offer_expired",
    )
    assert_ledger_matches_mrr(client, admin_headers, db)


def test_session_token_upgrades_only_its_account(
    client: TestClient, admin_headers: dict[str, str], acme: dict
) -> None:
    client.put("/v1/accounts/other", json=ACME, headers=admin_headers)
    token = client.post("/v1/accounts/acme/session-tokens", headers=admin_headers).json()["token"]
    browser = {"Authorization": f"Bearer {token}"}
    assert_problem(
        upgrade(client, browser, {"target": {"seats": 9}}, acc="other"), 404, "account_not_found"
    )
    assert upgrade(client, browser, {"target": {"seats": 9}}).status_code == 200


@pytest.mark.parametrize("same_key", [True, False], ids=["same-key", "different-keys"])
def test_fifty_concurrent_posts_of_one_offer_apply_once(
    app: FastAPI,
    client: TestClient,
    admin_headers: dict[str, str],
    acme: dict,
    db: Engine,
    same_key: bool,
) -> None:
    report_active_seats(client, admin_headers, 7)
    token = seat_offer_token(client, admin_headers)["offer_token"]
    with live_server(app) as base_url, httpx.Client(base_url=base_url, timeout=60) as http:

        def post(index: int) -> httpx.Response:
            key = "same" if same_key else f"key-{index}"
            return upgrade(http, admin_headers, {"offer_token": token}, key=key)

        with ThreadPoolExecutor(max_workers=50) as pool:
            responses = list(pool.map(post, range(50)))
    statuses = sorted(r.status_code for r in responses)
    if same_key:
        assert statuses == [200] * 50
        assert len({r.json()["upgrade_id"] for r in responses}) == 1
    else:
        assert statuses.count(200) == 1 and statuses.count(409) == 49, statuses
    expansions = [row for row in ledger_rows(db) if row.kind == "expansion"]
    assert len(expansions) == 1
    from sqlalchemy.orm import Session

    with Session(db) as session:
        changes = select(func.count()).where(InvoiceRow.billing_reason == "subscription_update")
        assert session.scalar(changes) == 1
    assert_ledger_matches_mrr(client, admin_headers, db)


def test_scheduled_downgrade_applies_at_renewal_with_one_contraction(
    client: TestClient, admin_headers: dict[str, str], acme: dict, clock: FakeClock, db: Engine
) -> None:
    upgrade(client, admin_headers, {"target": {"tier": "starter", "seats": 5}})
    clock.advance(days=16)  # past the period end (Dec 10, 12:00)
    quote = client.post(
        "/v1/accounts/acme/quotes", json={"target": {"seats": 6}}, headers=admin_headers
    )
    assert quote.status_code == 200, quote.text
    account = client.get("/v1/accounts/acme", headers=admin_headers).json()
    assert (account["tier"], account["seats"]) == ("starter", 5)
    assert account["current_period_start"] == "2026-12-10T12:00:00Z"
    rows = ledger_rows(db)
    assert [(r.kind, r.mrr_delta_minor) for r in rows] == [
        ("new", 12_900),
        ("contraction", (2_900 + 2 * 900) - 12_900),
    ]
    assert_ledger_matches_mrr(client, admin_headers, db)


def test_a_higher_tier_that_lowers_mrr_is_a_downgrade_booked_as_one_contraction(
    client: TestClient, admin_headers: dict[str, str], clock: FakeClock, db: Engine
) -> None:
    """Growth with 50 seats (774.00) to Business with 10 (299.00): the tier ranks higher, but
    the change lowers MRR, so it is answered and scheduled as a downgrade (nothing charged now)
    and booked at renewal as the contraction it is."""
    big = {"tier": "growth", "interval": "month", "seats": 50}
    assert client.put("/v1/accounts/acme", json=big, headers=admin_headers).status_code == 201
    clock.advance(days=5)
    body = upgrade(client, admin_headers, {"target": {"tier": "business", "seats": 10}}).json()
    assert (body["status"], body["change"]) == ("scheduled", "downgrade")
    assert body["amount_charged"]["amount_minor"] == 0 and body["ledger_entry_id"] is None
    clock.advance(days=30)  # past the period end; the next request renews the account first
    quote = client.post(
        "/v1/accounts/acme/quotes", json={"target": {"seats": 11}}, headers=admin_headers
    )
    assert quote.status_code == 200, quote.text
    account = client.get("/v1/accounts/acme", headers=admin_headers).json()
    assert (account["tier"], account["seats"]) == ("business", 10)
    assert [(r.kind, r.engine, r.mrr_delta_minor) for r in ledger_rows(db)] == [
        ("new", None, 77_400),
        ("contraction", "upsell", 29_900 - 77_400),
    ]
    assert_ledger_matches_mrr(client, admin_headers, db)


def test_renewal_with_a_declined_card_leaves_the_account_past_due(
    client: TestClient, app: FastAPI, admin_headers: dict[str, str], acme: dict, clock: FakeClock
) -> None:
    app.state.declining_accounts.add("acme")
    clock.advance(days=16)
    response = client.post(
        "/v1/accounts/acme/quotes", json={"target": {"seats": 9}}, headers=admin_headers
    )
    assert_problem(response, 409, "account_not_billable")
    assert client.get("/v1/accounts/acme", headers=admin_headers).json()["status"] == "past_due"


def test_a_trial_upgrade_moves_no_mrr_and_keeps_the_ledger_in_step(
    client: TestClient, admin_headers: dict[str, str], clock: FakeClock, db: Engine
) -> None:
    client.put("/v1/accounts/acme", json={**ACME, "status": "trialing"}, headers=admin_headers)
    clock.advance(days=3)
    response = upgrade(client, admin_headers, {"target": {"seats": 9}})
    assert response.status_code == 200, response.text
    assert response.json()["ledger_entry_id"] is None  # trials are not revenue yet
    assert ledger_rows(db) == []
    assert_ledger_matches_mrr(client, admin_headers, db)


def test_an_admin_put_cancels_a_downgrade_scheduled_before_it(
    client: TestClient, admin_headers: dict[str, str], acme: dict, clock: FakeClock, db: Engine
) -> None:
    scheduled = upgrade(client, admin_headers, {"target": {"tier": "growth", "seats": 6}})
    assert scheduled.json()["status"] == "scheduled", scheduled.text
    admin = {"tier": "business", "interval": "month", "seats": 10}
    put = client.put("/v1/accounts/acme", json=admin, headers=admin_headers)
    assert put.status_code == 200, put.text
    clock.advance(days=31)  # past the end of the PUT's period: the renewal keeps its plan
    quote = client.post(
        "/v1/accounts/acme/quotes", json={"target": {"seats": 11}}, headers=admin_headers
    )  # a request for the account renews it first
    assert quote.status_code == 200, quote.text
    account = client.get("/v1/accounts/acme", headers=admin_headers).json()
    assert (account["tier"], account["seats"]) == ("business", 10)
    assert account["current_period_start"] == put.json()["current_period_end"]
    assert [row.kind for row in ledger_rows(db)] == ["new", "expansion"]  # no contraction
    assert_ledger_matches_mrr(client, admin_headers, db)


def test_a_put_of_a_period_already_over_is_refused_and_cannot_wedge_the_account(
    client: TestClient, admin_headers: dict[str, str], clock: FakeClock
) -> None:
    ended = {
        **ACME,
        "current_period_start": "2026-10-01T00:00:00Z",
        "current_period_end": "2026-11-01T00:00:00Z",  # before the clock's 2026-11-10
    }
    refused = client.put("/v1/accounts/acme", json=ended, headers=admin_headers)
    assert_problem(refused, 422, "period_ended", "current_period_end")
    assert client.get("/v1/accounts/acme", headers=admin_headers).status_code == 404
