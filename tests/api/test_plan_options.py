"""GET /v1/accounts/{id}/plan-options: what the pricing table shows, priced exactly."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.test_accounts import assert_problem
from tests.fakes.clock import FakeClock

STARTER = {"tier": "starter", "interval": "month", "seats": 4}


@pytest.fixture
def browser(client: TestClient, admin_headers: dict[str, str], clock: FakeClock) -> dict:
    created = client.put("/v1/accounts/acme", json=STARTER, headers=admin_headers)
    assert created.status_code == 201, created.text
    clock.advance(days=10)
    token = client.post("/v1/accounts/acme/session-tokens", headers=admin_headers).json()["token"]
    return {"Authorization": f"Bearer {token}"}


def options(client: TestClient, headers: dict[str, str]) -> dict[tuple[str, str], dict[str, Any]]:
    response = client.get("/v1/accounts/acme/plan-options", headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["current"] == {**STARTER, "addons": {}} or body["current"]["tier"] != "starter"
    return {(o["tier"], o["interval"]): o for o in body["options"]}


def test_every_tier_and_interval_with_what_it_costs_today(
    client: TestClient, browser: dict[str, str]
) -> None:
    found = options(client, browser)
    assert list(found) == [
        ("starter", "month"),
        ("starter", "year"),
        ("growth", "month"),
        ("growth", "year"),
        ("business", "month"),
        ("business", "year"),
        ("enterprise", "month"),
        ("enterprise", "year"),
    ]
    current = found[("starter", "month")]
    assert current["action"] == "current" and current["quote"] is None
    assert current["recurring"] == {"amount_minor": 2_900 + 900, "currency": "USD"}
    growth = found[("growth", "month")]
    assert growth["action"] == "upgrade"
    # Growth includes 5 seats: 4 seats move to 5, the tier's minimum.
    assert growth["target"] == {"tier": "growth", "interval": "month", "seats": 5, "addons": {}}
    assert growth["recurring"] == {"amount_minor": 9_900, "currency": "USD"}
    assert growth["quote"]["amount_due_now"]["amount_minor"] > 0
    assert found[("enterprise", "month")]["action"] == "contact_sales"
    assert found[("enterprise", "month")]["target"] is None


def test_the_amount_shown_is_the_amount_charged(
    client: TestClient, browser: dict[str, str], admin_headers: dict[str, str]
) -> None:
    growth = options(client, browser)[("growth", "year")]
    quote = client.post(
        "/v1/accounts/acme/quotes", json={"target": growth["target"]}, headers=browser
    ).json()
    assert quote["amount_due_now"] == growth["quote"]["amount_due_now"]
    done = client.post(
        "/v1/accounts/acme/upgrades",
        json={
            "target": growth["target"],
            "expected_amount_due_minor": growth["quote"]["amount_due_now"]["amount_minor"],
        },
        headers={**browser, "Idempotency-Key": "table-1"},
    )
    assert done.status_code == 200, done.text
    assert done.json()["amount_charged"] == growth["quote"]["amount_due_now"]
    after = options(client, browser)
    assert after[("growth", "year")]["action"] == "current"
    # Nothing above Growth yearly but Business yearly is self-serve; the rest are lower or sales.
    assert after[("business", "year")]["action"] == "upgrade"
    assert after[("starter", "month")]["action"] in ("downgrade", "unavailable")
    assert after[("starter", "year")]["action"] in ("downgrade", "unavailable")


def test_only_the_account_itself_or_an_admin_reads_its_options(
    client: TestClient,
    browser: dict[str, str],
    admin_headers: dict[str, str],
    ingest_headers: dict[str, str],
) -> None:
    client.put("/v1/accounts/other", json=STARTER, headers=admin_headers)
    assert client.get("/v1/accounts/acme/plan-options", headers=admin_headers).status_code == 200
    assert_problem(
        client.get("/v1/accounts/other/plan-options", headers=browser), 404, "account_not_found"
    )
    assert_problem(
        client.get("/v1/accounts/acme/plan-options", headers=ingest_headers),
        403,
        "insufficient_scope",
    )
    assert_problem(client.get("/v1/accounts/acme/plan-options"), 401, "missing_credentials")
