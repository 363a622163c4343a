"""The offer funnel counts what customers saw: PUT .../seen-offers/{offer_id}, once per offer."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.api.test_accounts import assert_problem
from tests.api.test_offers import acme, offers, report  # noqa: F401  (acme is a fixture)
from tests.fakes.clock import FakeClock

YEAR = {"from": "2026-01-01T00:00:00Z", "to": "2027-01-01T00:00:00Z"}


def session_headers(client: TestClient, admin_headers: dict[str, str], account: str) -> dict:
    response = client.post(f"/v1/accounts/{account}/session-tokens", headers=admin_headers)
    return {"Authorization": f"Bearer {response.json()['token']}"}


def seen(client: TestClient, headers: dict[str, str], offer_id: str, account: str = "acme") -> Any:
    return client.put(f"/v1/accounts/{account}/seen-offers/{offer_id}", headers=headers)


def funnel_rows(client: TestClient, finance_headers: dict[str, str]) -> dict[tuple, dict]:
    response = client.get("/v1/reports/nrr", params=YEAR, headers=finance_headers)
    assert response.status_code == 200, response.text
    rows = response.json()["offer_funnel"]["rows"]
    return {(row["engine"], row["in_activation_window"]): row for row in rows}


@pytest.mark.usefixtures("acme")
def test_an_offer_is_seen_once_however_often_it_is_reported(
    client: TestClient, admin_headers: dict[str, str], clock: FakeClock
) -> None:
    report(client, admin_headers, "seats", 9, "set")
    browser = session_headers(client, admin_headers, "acme")
    top = offers(client, browser)["offers"][0]
    first = seen(client, browser, top["id"])
    assert first.status_code == 200, first.text
    assert first.json() == {
        "account_id": "acme",
        "offer_id": top["id"],
        "seen_at": clock.now().isoformat().replace("+00:00", "Z"),
    }
    clock.advance(minutes=3)
    again = seen(client, browser, top["id"])  # a re-render, or a retry after a lost answer
    assert again.status_code == 200 and again.json() == first.json()


@pytest.mark.usefixtures("acme")
def test_a_seen_report_is_checked_like_every_account_read(
    client: TestClient,
    admin_headers: dict[str, str],
    ingest_headers: dict[str, str],
    finance_headers: dict[str, str],
) -> None:
    client.put("/v1/accounts/other", json={"tier": "starter", "seats": 3}, headers=admin_headers)
    browser = session_headers(client, admin_headers, "acme")
    offer_id = "off_" + "0" * 24
    body = assert_problem(seen(client, browser, "not-an-offer"), 422, "validation_error")
    assert "offer_id" in str(body)
    assert_problem(seen(client, browser, offer_id, "other"), 404, "account_not_found")
    assert_problem(seen(client, admin_headers, offer_id, "nobody"), 404, "account_not_found")
    assert_problem(seen(client, finance_headers, offer_id), 403, "insufficient_scope")
    assert_problem(seen(client, {}, offer_id), 401, "missing_credentials")
    # The product's backend may report what its own UI displayed, with its ingest key.
    assert seen(client, ingest_headers, offer_id).status_code == 200


@pytest.mark.usefixtures("acme")
def test_the_funnel_converts_what_was_seen_not_what_was_served(
    client: TestClient,
    app: FastAPI,
    admin_headers: dict[str, str],
    finance_headers: dict[str, str],
    clock: FakeClock,
) -> None:
    report(client, admin_headers, "seats", 9, "set")
    browser = session_headers(client, admin_headers, "acme")
    served = [offers(client, browser)["offers"] for _ in range(4)]  # four page loads
    top = served[-1][0]
    assert seen(client, browser, top["id"]).status_code == 200  # the widget showed only the top
    upgraded = client.post(
        "/v1/accounts/acme/upgrades",
        json={"offer_token": top["offer_token"]},
        headers={**browser, "Idempotency-Key": "funnel-1"},
    )
    assert upgraded.status_code == 200, upgraded.text
    app.state.impressions.flush()  # served offers are written off the request path

    rows = funnel_rows(client, finance_headers)
    engine = (top["engine"], False)
    by_engine: dict[str, int] = {}
    for page in served:
        for offer in page:
            by_engine[offer["engine"]] = by_engine.get(offer["engine"], 0) + 1
    assert rows[engine]["served"] == by_engine[top["engine"]]
    assert (rows[engine]["seen"], rows[engine]["accepted"], rows[engine]["conversion"]) == (
        1,
        1,
        "1.0000",
    )
    for other in set(by_engine) - {top["engine"]}:  # served on every load, never on screen
        row = rows[(other, False)]
        assert (row["served"], row["seen"], row["conversion"]) == (by_engine[other], 0, None)
