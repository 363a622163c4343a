"""Talk to sales: POST /v1/accounts/{id}/sales-requests records a signal for the sales team,
once per account, tier and billing period, delivered through the signal outbox."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from service.adapters.db import make_session_factory
from service.services.outbox import deliver_due
from tests.api.test_accounts import assert_problem
from tests.api.test_offer_funnel import session_headers
from tests.api.test_offers import acme  # noqa: F401  (a fixture)
from tests.fakes.clock import FakeClock
from tests.integration.test_outbox_delivery import config
from tests.usage_fixtures import webhook_receiver


def ask(client: TestClient, headers: dict[str, str], tier: str, account: str = "acme"):
    return client.post(
        f"/v1/accounts/{account}/sales-requests", json={"tier": tier}, headers=headers
    )


@pytest.mark.usefixtures("acme")
def test_asking_sales_records_one_signal_per_tier_and_period(
    client: TestClient, admin_headers: dict[str, str], clock: FakeClock
) -> None:
    browser = session_headers(client, admin_headers, "acme")
    first = ask(client, browser, "enterprise")
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["tier"] == "enterprise" and body["motion"] == "sales_assisted"
    assert body["requested_at"] == clock.now().isoformat().replace("+00:00", "Z")
    clock.advance(minutes=5)
    again = ask(client, browser, "enterprise")  # a second click, or a retry after a lost answer
    assert again.status_code == 200 and again.json() == body
    # The sales team sees it among the account's signals, routed to them.
    signals = client.get("/v1/accounts/acme/signals", headers=admin_headers).json()
    [request] = [c for c in signals["crossings"] if c["id"] == body["signal_id"]]
    assert request["threshold_key"] == "sales_request.enterprise"
    assert request["motion"] == "sales_assisted"
    # The next billing period is a new conversation.
    clock.advance(days=31)
    later = ask(client, session_headers(client, admin_headers, "acme"), "enterprise")
    assert later.status_code == 201 and later.json()["signal_id"] != body["signal_id"]


@pytest.mark.usefixtures("acme")
def test_a_sales_request_is_checked_like_every_account_write(
    client: TestClient,
    admin_headers: dict[str, str],
    ingest_headers: dict[str, str],
    finance_headers: dict[str, str],
) -> None:
    client.put("/v1/accounts/other", json={"tier": "starter", "seats": 3}, headers=admin_headers)
    browser = session_headers(client, admin_headers, "acme")
    problem = assert_problem(ask(client, browser, "platinum"), 422, "unknown_tier")
    assert problem["field"] == "tier"
    assert_problem(ask(client, browser, "Not A Key"), 422, "validation_error")
    assert_problem(ask(client, browser, "enterprise", "other"), 404, "account_not_found")
    assert_problem(ask(client, finance_headers, "enterprise"), 403, "insufficient_scope")
    assert_problem(ask(client, {}, "enterprise"), 401, "missing_credentials")
    # The product's backend may relay a request from its own UI with its ingest key.
    assert ask(client, ingest_headers, "enterprise").status_code == 201


@pytest.mark.usefixtures("acme")
def test_the_sales_team_receives_the_request_through_the_outbox(
    client: TestClient, db: Engine, admin_headers: dict[str, str], clock: FakeClock
) -> None:
    browser = session_headers(client, admin_headers, "acme")
    signal_id = ask(client, browser, "enterprise").json()["signal_id"]
    with webhook_receiver() as receiver, httpx.Client() as http:
        deliver_due(make_session_factory(db), config(receiver.url), clock, http)
    [payload] = [r.payload for r in receiver.accepted if r.payload["signal_id"] == signal_id]
    assert payload["type"] == "upshift.sales_requested"
    assert payload["tier"] == "enterprise"
    assert payload["account_id"] == "acme"
    assert payload["motion"] == "sales_assisted"
