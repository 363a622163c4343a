"""POST /v1/accounts/{id}/quotes and session tokens: exact proration, allow-list, scoping."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.test_accounts import assert_problem
from tests.fakes.clock import FakeClock

# Growth: 9,900 base with 5 seats included, 1,500 per extra seat; period of 30 days from now.
ACME = {"tier": "growth", "interval": "month", "seats": 7}


@pytest.fixture
def acme(client: TestClient, admin_headers: dict[str, str]) -> dict[str, Any]:
    response = client.put("/v1/accounts/acme", json=ACME, headers=admin_headers)
    assert response.status_code == 201
    return response.json()


def quote(client: TestClient, headers: dict[str, str], target: dict, **extra: Any):
    return client.post(
        "/v1/accounts/acme/quotes", json={"target": target, **extra}, headers=headers
    )


def amounts(body: dict) -> list[tuple[str, int]]:
    return [(line["key"], line["amount"]["amount_minor"]) for line in body["lines"]]


def test_seat_increase_mid_period(
    client: TestClient, admin_headers: dict[str, str], acme: dict, clock: FakeClock
) -> None:
    clock.advance(days=15)  # exactly half of the 30-day period is left
    body = quote(client, admin_headers, {"seats": 9}).json()
    # Old seat line 2 × 1,500 credited for half the period, new 4 × 1,500 charged for half.
    assert amounts(body) == [("seats", -1_500), ("seats", 3_000)]
    assert body["amount_due_now"] == {"amount_minor": 1_500, "currency": "USD"}
    assert body["new_recurring"]["amount_minor"] == 9_900 + 4 * 1_500
    assert body["change"] == "upgrade" and body["timing"] == "immediate"
    assert body["proration_date"] == "2026-11-25T12:00:00Z"
    assert body["next_invoice_date"] == "2026-12-10T12:00:00Z"
    assert body["lines"][0]["period_start"] == "2026-11-25T12:00:00Z"


def test_tier_upgrade_swaps_base_and_seat_lines(
    client: TestClient, admin_headers: dict[str, str], acme: dict, clock: FakeClock
) -> None:
    clock.advance(days=15)
    body = quote(client, admin_headers, {"tier": "business"}).json()
    assert body["target"] == {"tier": "business", "interval": "month", "seats": 10, "addons": {}}
    assert sorted(amounts(body)) == sorted([("base", -4_950), ("seats", -1_500), ("base", 14_950)])
    assert body["amount_due_now"]["amount_minor"] == 8_500
    assert body["new_mrr"]["amount_minor"] == 29_900


def test_pinned_proration_date_is_honoured(
    client: TestClient, admin_headers: dict[str, str], acme: dict, clock: FakeClock
) -> None:
    clock.advance(days=20)
    pinned = quote(
        client, admin_headers, {"seats": 9}, proration_date="2026-11-25T12:00:00.750000Z"
    ).json()
    assert pinned["proration_date"] == "2026-11-25T12:00:00Z"
    assert pinned["amount_due_now"]["amount_minor"] == 1_500
    future = quote(client, admin_headers, {"seats": 9}, proration_date="2026-12-31T00:00:00Z")
    assert_problem(future, 422, "proration_date_out_of_range", "proration_date")


def test_month_to_year_resets_the_period(
    client: TestClient, admin_headers: dict[str, str], acme: dict, clock: FakeClock
) -> None:
    clock.advance(days=15)
    body = quote(client, admin_headers, {"interval": "year"}).json()
    assert body["timing"] == "immediate"
    # Unused half month credited (base and seats), the full year of the new lines charged.
    assert sorted(amounts(body)) == sorted(
        [("base", -4_950), ("seats", -1_500), ("base", 99_000), ("seats", 30_000)]
    )
    assert body["next_invoice_date"] == "2027-11-25T12:00:00Z"


def test_downgrade_waits_for_the_end_of_term(
    client: TestClient, admin_headers: dict[str, str], acme: dict, clock: FakeClock
) -> None:
    clock.advance(days=3)
    body = quote(client, admin_headers, {"tier": "starter", "seats": 5}).json()
    assert body["change"] == "downgrade" and body["timing"] == "end_of_term"
    assert body["lines"] == [] and body["amount_due_now"]["amount_minor"] == 0
    assert body["effective_at"] == "2026-12-10T12:00:00Z"
    assert body["new_recurring"]["amount_minor"] == 2_900 + 2 * 900
    fewer = quote(client, admin_headers, {"seats": 6}).json()
    assert fewer["timing"] == "end_of_term" and fewer["amount_due_now"]["amount_minor"] == 0


@pytest.mark.parametrize(
    ("target", "code", "field"),
    [
        ({"tier": "enterprise"}, "sales_assisted_target", "target.tier"),
        ({"seats": 51}, "seats_out_of_range", "target.seats"),
        ({"tier": "nope"}, "unknown_tier", "target.tier"),
        ({"seats": 7}, "no_change", "target"),
        ({"addons": {"sso_pack": 1}}, "unknown_addon", "target.addons.sso_pack"),
        ({"seats": -1}, "validation_error", "target.seats"),
    ],
)
def test_refusals_say_why(
    client: TestClient,
    admin_headers: dict[str, str],
    acme: dict,
    target: dict,
    code: str,
    field: str,
) -> None:
    assert_problem(quote(client, admin_headers, target), 422, code, field)


def test_path_not_on_the_allow_list(client: TestClient, admin_headers: dict[str, str]) -> None:
    client.put("/v1/accounts/acme", json={"tier": "enterprise", "seats": 80}, headers=admin_headers)
    assert_problem(
        quote(client, admin_headers, {"tier": "growth", "seats": 10}),
        422,
        "change_not_allowed",
        "target.tier",
    )


def test_local_billing_renews_an_ended_period_before_quoting(
    client: TestClient, admin_headers: dict[str, str], acme: dict, clock: FakeClock
) -> None:
    clock.advance(days=31)  # one day into the next period (Dec 10 -> Jan 10)
    body = quote(client, admin_headers, {"seats": 9}).json()
    assert body["next_invoice_date"] == "2027-01-10T12:00:00Z"
    account = client.get("/v1/accounts/acme", headers=admin_headers).json()
    assert account["current_period_start"] == "2026-12-10T12:00:00Z"
    assert account["current_period_end"] == "2027-01-10T12:00:00Z"


def test_month_end_anchor_survives_february(
    client: TestClient, admin_headers: dict[str, str], clock: FakeClock
) -> None:
    client.put(
        "/v1/accounts/late",
        json={**ACME, "current_period_start": "2027-01-31T00:00:00Z"},
        headers=admin_headers,
    )
    clock.set(datetime(2027, 3, 5, tzinfo=UTC))
    client.post("/v1/accounts/late/quotes", json={"target": {"seats": 9}}, headers=admin_headers)
    account = client.get("/v1/accounts/late", headers=admin_headers).json()
    assert account["current_period_start"] == "2027-02-28T00:00:00Z"
    assert account["current_period_end"] == "2027-03-31T00:00:00Z"


def session_token(client: TestClient, headers: dict[str, str], account: str = "acme") -> str:
    response = client.post(f"/v1/accounts/{account}/session-tokens", headers=headers)
    assert response.status_code == 201, response.text
    return response.json()["token"]


def test_session_token_is_bound_to_one_account(
    client: TestClient, admin_headers: dict[str, str], acme: dict, clock: FakeClock
) -> None:
    client.put("/v1/accounts/other", json=ACME, headers=admin_headers)
    browser = {"Authorization": f"Bearer {session_token(client, admin_headers)}"}
    assert quote(client, browser, {"seats": 9}).status_code == 200
    elsewhere = client.post(
        "/v1/accounts/other/quotes", json={"target": {"seats": 9}}, headers=browser
    )
    ghost = client.post(
        "/v1/accounts/ghost/quotes", json={"target": {"seats": 9}}, headers=admin_headers
    )
    # Same answer as for an account that does not exist: the token reveals nothing.
    assert_problem(elsewhere, 404, "account_not_found")
    assert_problem(ghost, 404, "account_not_found")
    assert client.get("/v1/accounts/acme", headers=browser).status_code == 401
    assert client.post("/v1/accounts/acme/session-tokens", headers=browser).status_code == 401
    clock.advance(minutes=16)
    assert_problem(quote(client, browser, {"seats": 9}), 401, "token_expired")


def test_tampered_session_token_is_refused(
    client: TestClient, admin_headers: dict[str, str], acme: dict
) -> None:
    token = session_token(client, admin_headers)
    body, signature = token.split(".")
    forged = {"Authorization": f"Bearer {body[:-2]}xx.{signature}"}
    assert_problem(quote(client, forged, {"seats": 9}), 401, "invalid_token")


def test_session_tokens_need_an_admin_key_and_a_real_account(
    client: TestClient, admin_headers: dict[str, str], ingest_headers: dict[str, str]
) -> None:
    assert_problem(
        client.post("/v1/accounts/ghost/session-tokens", headers=admin_headers),
        404,
        "account_not_found",
    )
    assert_problem(
        client.post("/v1/accounts/ghost/session-tokens", headers=ingest_headers),
        403,
        "insufficient_scope",
    )


def test_a_quote_in_the_first_second_of_a_period(
    client: TestClient, admin_headers: dict[str, str], clock: FakeClock
) -> None:
    clock.set(datetime(2026, 11, 10, 12, 0, 0, 750_000, tzinfo=UTC))
    created = client.put("/v1/accounts/acme", json=ACME, headers=admin_headers).json()
    assert created["current_period_start"] == "2026-11-10T12:00:00Z"  # whole seconds
    clock.advance(seconds=0.1)
    body = quote(client, admin_headers, {"seats": 9}).json()
    assert body["proration_date"] == "2026-11-10T12:00:00Z"
    assert body["amount_due_now"]["amount_minor"] == 3_000  # the whole period is left
