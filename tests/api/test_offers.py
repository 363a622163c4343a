"""GET /v1/accounts/{id}/upgrade-offers: ranked, priced, signed, recorded, and never stale."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from service.adapters.offer_tables import OfferImpressionRow
from service.api.deps import account_principal
from service.api.offer_schemas import OffersOut, dump_json, offers_payload
from service.services.offers import price_offers
from tests.api.test_accounts import assert_problem
from tests.fakes.clock import FakeClock

ACME = {"tier": "growth", "interval": "month", "seats": 10}


@pytest.fixture
def acme(client: TestClient, admin_headers: dict[str, str], clock: FakeClock) -> None:
    assert client.put("/v1/accounts/acme", json=ACME, headers=admin_headers).status_code == 201
    clock.advance(days=5)


def report(client: TestClient, headers: dict[str, str], feature: str, quantity: int, action: str):
    event = {
        "event_id": str(uuid.uuid4()),
        "account_id": "acme",
        "feature": feature,
        "quantity": quantity,
        "action": action,
        "timestamp": "2026-11-15T11:00:00Z",
    }
    response = client.post("/v1/usage", json={"events": [event]}, headers=headers)
    assert response.status_code in (200, 201, 207), response.text


def offers(client: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    response = client.get("/v1/accounts/acme/upgrade-offers", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_quiet_account_gets_an_empty_list(
    client: TestClient, admin_headers: dict[str, str], acme: None
) -> None:
    assert offers(client, admin_headers) == {
        "account_id": "acme",
        "in_activation_window": False,
        "offers": [],
    }


def test_seat_pressure_gives_priced_signed_offers(
    client: TestClient, app: FastAPI, admin_headers: dict[str, str], acme: None, db: Engine
) -> None:
    report(client, admin_headers, "seats", 9, "set")
    body = offers(client, admin_headers)
    # The hand-built hot-path JSON is exactly what the documented schema produces.
    assert OffersOut.model_validate(body).model_dump(mode="json") == body
    engines = [offer["engine"] for offer in body["offers"]]
    assert engines[0] == "seat" and "upsell" in engines
    seat = body["offers"][0]
    assert seat["target"]["seats"] == 12  # 9 active seats at 75% utilization
    assert seat["reasons"] == ["seats_at_90_percent"]
    assert seat["offer_token"].startswith("uot_")
    # 25 of 30 days left: two more seats at 1,500 for 25/30 of the period.
    assert seat["quote"]["amount_due_now"] == {"amount_minor": 2_500, "currency": "USD"}
    assert seat["expires_at"] == "2026-11-15T12:15:00Z"

    app.state.impressions.flush()
    with Session(db) as session:
        shown = list(session.scalars(select(OfferImpressionRow)))
    assert sorted(row.offer_id for row in shown) == sorted(o["id"] for o in body["offers"])
    assert {row.engine for row in shown} == set(engines)


def test_a_change_is_seen_at_once(
    client: TestClient, admin_headers: dict[str, str], acme: None
) -> None:
    report(client, admin_headers, "seats", 9, "set")
    assert offers(client, admin_headers)["offers"]  # cached now
    client.put("/v1/accounts/acme", json={**ACME, "seats": 20}, headers=admin_headers)
    assert offers(client, admin_headers)["offers"] == []  # 9 of 20 seats: nothing to offer
    report(client, admin_headers, "seats", 19, "set")
    assert offers(client, admin_headers)["offers"][0]["engine"] == "seat"


def test_session_token_reads_only_its_account(
    client: TestClient, admin_headers: dict[str, str], acme: None
) -> None:
    client.put("/v1/accounts/other", json=ACME, headers=admin_headers)
    token = client.post("/v1/accounts/acme/session-tokens", headers=admin_headers).json()["token"]
    browser = {"Authorization": f"Bearer {token}"}
    assert offers(client, browser)["account_id"] == "acme"
    assert_problem(
        client.get("/v1/accounts/other/upgrade-offers", headers=browser), 404, "account_not_found"
    )
    assert_problem(client.get("/v1/accounts/acme/upgrade-offers"), 401, "missing_credentials")


def test_the_widget_reads_usage_with_its_session_token(
    client: TestClient, admin_headers: dict[str, str], acme: None
) -> None:
    client.put("/v1/accounts/other", json=ACME, headers=admin_headers)
    report(client, admin_headers, "seats", 9, "set")
    token = client.post("/v1/accounts/acme/session-tokens", headers=admin_headers).json()["token"]
    browser = {"Authorization": f"Bearer {token}"}
    usage = client.get("/v1/accounts/acme/usage", headers=browser)
    assert usage.status_code == 200, usage.text
    seats = next(f for f in usage.json()["features"] if f["feature"] == "seats")
    assert (seats["used"], seats["limit"]) == (9, 10)
    assert_problem(
        client.get("/v1/accounts/other/usage", headers=browser), 404, "account_not_found"
    )


def test_the_fast_route_keeps_the_contract(
    client: TestClient, admin_headers: dict[str, str], acme: None
) -> None:
    assert_problem(
        client.get("/v1/accounts/bad%20id/upgrade-offers", headers=admin_headers),
        422,
        "validation_error",
        "account_id",
    )
    assert_problem(
        client.get("/v1/accounts/acme/upgrade-offers", headers={"Authorization": "Bearer nope"}),
        401,
        "invalid_credentials",
    )
    client.get("/v1/accounts/acme/upgrade-offers", headers=admin_headers)
    metrics = client.get("/metrics").text
    assert 'route="/v1/accounts/{account_id}/upgrade-offers",status="200"' in metrics


def test_the_page_load_path_answers_exactly_as_the_route(
    client: TestClient, app: FastAPI, admin_headers: dict[str, str], acme: None, db: Engine
) -> None:
    """A session token with a cached plan is answered before FastAPI (api.page_loads): same
    body, headers, impressions and metrics as the documented route."""
    report(client, admin_headers, "seats", 9, "set")
    token = client.post("/v1/accounts/acme/session-tokens", headers=admin_headers).json()["token"]
    browser = {"Authorization": f"Bearer {token}"}
    first = client.get("/v1/accounts/acme/upgrade-offers", headers=browser)  # a miss: the route

    def not_reached() -> None:
        raise AssertionError("the FastAPI route was reached")

    app.dependency_overrides[account_principal] = not_reached
    try:
        second = client.get("/v1/accounts/acme/upgrade-offers", headers=browser)  # cached
    finally:
        app.dependency_overrides.clear()
    assert second.status_code == first.status_code == 200
    assert second.content == first.content  # the same second: the same ids, quotes and tokens
    for name in ("content-type", "content-length", "cache-control"):
        assert second.headers[name] == first.headers[name], name
    assert first.headers["cache-control"] == "no-store"  # signed, per-customer prices

    # What the page-load path does not answer goes on to the route, with its errors.
    client.put("/v1/accounts/other", json=ACME, headers=admin_headers)
    assert_problem(
        client.get("/v1/accounts/other/upgrade-offers", headers=browser), 404, "account_not_found"
    )
    assert_problem(
        client.get("/v1/accounts/acme/upgrade-offers", headers={"Authorization": "Basic x"}),
        401,
        "missing_credentials",
    )
    assert client.get("/v1/accounts/acme/upgrade-offers", headers=admin_headers).status_code == 200
    assert_problem(
        client.get("/v1/accounts/acme/upgrade-offers?x=1&x=2", headers=browser),
        422,
        "repeated_parameter",
        "x",
    )

    app.state.impressions.flush()
    with Session(db) as session:
        shown = list(session.scalars(select(OfferImpressionRow)))
    offers_shown = len(first.json()["offers"])
    assert len(shown) == 3 * offers_shown  # the two browser loads and the admin's
    metrics = client.get("/metrics").text
    route = 'route="/v1/accounts/{account_id}/upgrade-offers"'
    assert f'upshift_http_requests_total{{method="GET",{route},status="200"}} 3.0' in metrics


@pytest.mark.parametrize(
    ("plan", "usage", "engines"),
    [
        (ACME, [], []),
        (ACME, [("seats", 9, "set")], ["seat", "upsell"]),
        (ACME, [("api_calls", 95_000, "increment")], ["addon", "upsell"]),
        (
            {**ACME, "addons": {"api_pack": 1}},
            [("seats", 10, "set"), ("api_calls", 190_000, "increment")],
            ["seat", "addon", "upsell"],
        ),
        (  # no self-serve step up from Business: a seat offer and a talk with sales
            {"tier": "business", "interval": "year", "seats": 20},
            [("seats", 20, "set")],
            ["seat", "sales_assisted"],
        ),
    ],
    ids=["none", "seats", "add-on", "several", "yearly-business"],
)
def test_the_page_load_body_is_the_general_rendering(
    client: TestClient,
    app: FastAPI,
    admin_headers: dict[str, str],
    clock: FakeClock,
    plan: dict[str, Any],
    usage: list[tuple[str, int, str]],
    engines: list[str],
) -> None:
    """Route and page-load path answer from the plan's pre-rendered page (api.offer_page); it
    is the body the general path renders (price_offers, offers_payload) for the same second."""
    assert client.put("/v1/accounts/acme", json=plan, headers=admin_headers).status_code == 201
    clock.advance(days=5, seconds=7, microseconds=345_678)
    for feature, quantity, action in usage:
        report(client, admin_headers, feature, quantity, action)
    token = client.post("/v1/accounts/acme/session-tokens", headers=admin_headers).json()["token"]
    browser = {"Authorization": f"Bearer {token}"}
    first = client.get("/v1/accounts/acme/upgrade-offers", headers=browser)  # a miss: the route
    second = client.get("/v1/accounts/acme/upgrade-offers", headers=browser)  # cached
    state = app.state
    now = state.clock.now()
    page = state.offer_cache.get("acme", now)
    general = price_offers(page.plan, now)
    assert first.content == second.content == dump_json(offers_payload(general))
    assert sorted(offer["engine"] for offer in first.json()["offers"]) == sorted(engines)


def test_an_expired_session_token_is_refused_even_when_cached(
    client: TestClient, admin_headers: dict[str, str], acme: None, clock: FakeClock
) -> None:
    body = {"ttl_seconds": 60}
    token = client.post(
        "/v1/accounts/acme/session-tokens", json=body, headers=admin_headers
    ).json()["token"]
    browser = {"Authorization": f"Bearer {token}"}
    assert offers(client, browser)["account_id"] == "acme"
    assert offers(client, browser)["account_id"] == "acme"  # cached, and its token remembered
    clock.advance(seconds=61)
    assert_problem(
        client.get("/v1/accounts/acme/upgrade-offers", headers=browser), 401, "token_expired"
    )


def test_offers_after_the_period_ended_are_priced_in_the_renewed_period(
    client: TestClient, admin_headers: dict[str, str], acme: None, clock: FakeClock
) -> None:
    report(client, admin_headers, "seats", 9, "set")
    assert offers(client, admin_headers)["offers"]  # cached, in the first period
    before = client.get("/v1/accounts/acme", headers=admin_headers).json()
    clock.advance(days=30)  # past the period end: the cached plan is of no use
    body = offers(client, admin_headers)
    after = client.get("/v1/accounts/acme", headers=admin_headers).json()
    assert after["current_period_start"] == before["current_period_end"]  # renewed first
    seat = body["offers"][0]
    assert seat["engine"] == "seat"
    assert seat["quote"]["next_invoice_date"] == after["current_period_end"]
