"""PUT and GET /v1/accounts/{id}: validated against the catalog, optimistic locking, problems."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

GROWTH = {"tier": "growth", "interval": "month", "seats": 7, "addons": {"api_pack": 1}}


def put(client: TestClient, headers: dict[str, str], body: dict[str, Any], account: str = "acme"):
    return client.put(f"/v1/accounts/{account}", json=body, headers=headers)


def assert_problem(response: Any, status: int, code: str, field: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["title"]
    if field is not None:
        assert body["field"] == field
    return body


def test_create_then_read(client: TestClient, admin_headers: dict[str, str]) -> None:
    created = put(client, admin_headers, {**GROWTH, "name": "Acme"})
    assert created.status_code == 201
    body = created.json()
    assert body["tier"] == "growth" and body["seats"] == 7 and body["addons"] == {"api_pack": 1}
    # 9,900 base + 2 extra seats × 1,500 + one API pack 4,900 = 17,800 a month.
    assert body["recurring_amount"] == {"amount_minor": 17_800, "currency": "USD"}
    assert body["mrr"] == {"amount_minor": 17_800, "currency": "USD"}
    assert body["current_period_start"] == "2026-11-10T12:00:00Z"
    assert body["current_period_end"] == "2026-12-10T12:00:00Z"
    assert created.headers["etag"] == '"1"'

    read = client.get("/v1/accounts/acme", headers=admin_headers)
    assert read.status_code == 200
    assert read.json() == body


def test_yearly_mrr_is_normalized(client: TestClient, admin_headers: dict[str, str]) -> None:
    body = put(client, admin_headers, {"tier": "starter", "interval": "year", "seats": 3}).json()
    assert body["recurring_amount"]["amount_minor"] == 29_000
    assert body["mrr"]["amount_minor"] == 2_417  # 29,000 / 12 = 2,416.67, half away from zero


def test_replace_bumps_version_and_if_match_guards(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    put(client, admin_headers, GROWTH)
    updated = client.put(
        "/v1/accounts/acme",
        json={**GROWTH, "seats": 9},
        headers={**admin_headers, "If-Match": '"1"'},
    )
    assert updated.status_code == 200 and updated.json()["version"] == 2
    stale = client.put(
        "/v1/accounts/acme",
        json={**GROWTH, "seats": 10},
        headers={**admin_headers, "If-Match": '"1"'},
    )
    assert_problem(stale, 409, "state_changed")
    assert client.get("/v1/accounts/acme", headers=admin_headers).json()["seats"] == 9


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({**GROWTH, "tier": "enterprize"}, "unknown_tier", "tier"),
        ({**GROWTH, "seats": 51}, "seats_out_of_range", "seats"),
        ({**GROWTH, "seats": 4}, "seats_out_of_range", "seats"),
        ({**GROWTH, "addons": {"nope": 1}}, "unknown_addon", "addons.nope"),
        (
            {"tier": "business", "seats": 10, "addons": {"audit_log": 1}},
            "addon_not_allowed",
            "addons.audit_log",
        ),
        ({**GROWTH, "addons": {"api_pack": 11}}, "addon_quantity_out_of_range", "addons.api_pack"),
        ({**GROWTH, "currency": "EUR"}, "currency_mismatch", "currency"),
        ({**GROWTH, "seats": "7"}, "validation_error", "seats"),
        ({**GROWTH, "seats": 7.5}, "validation_error", "seats"),
        ({**GROWTH, "interval": "week"}, "validation_error", "interval"),
        ({**GROWTH, "colour": "red"}, "validation_error", "colour"),
        ({"seats": 5}, "validation_error", "tier"),
        (
            {**GROWTH, "current_period_start": "2026-11-01T00:00:00"},
            "validation_error",
            "current_period_start",
        ),
        (
            {
                **GROWTH,
                "current_period_start": "2026-11-01T00:00:00Z",
                "current_period_end": "2026-10-01T00:00:00Z",
            },
            "validation_error",
            "current_period_end",
        ),
    ],
)
def test_bad_account_writes_are_422_naming_the_field(
    client: TestClient, admin_headers: dict[str, str], body: dict, code: str, field: str
) -> None:
    assert_problem(put(client, admin_headers, body), 422, code, field)
    assert client.get("/v1/accounts/acme", headers=admin_headers).status_code == 404


def test_sales_assisted_tier_can_be_recorded(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    body = put(client, admin_headers, {"tier": "enterprise", "seats": 120}).json()
    assert body["recurring_amount"]["amount_minor"] == 0


def test_unknown_account_is_404(client: TestClient, admin_headers: dict[str, str]) -> None:
    assert_problem(
        client.get("/v1/accounts/ghost", headers=admin_headers), 404, "account_not_found"
    )


def test_bad_account_id_is_422(client: TestClient, admin_headers: dict[str, str]) -> None:
    assert_problem(
        put(client, admin_headers, GROWTH, account="bad id!"), 422, "validation_error", "account_id"
    )


def test_auth_is_required_and_scoped(
    client: TestClient, admin_headers: dict[str, str], ingest_headers: dict[str, str]
) -> None:
    assert_problem(client.get("/v1/accounts/acme"), 401, "missing_credentials")
    bogus = {"Authorization": "Bearer upk_not-a-real-key"}
    assert_problem(client.get("/v1/accounts/acme", headers=bogus), 401, "invalid_credentials")
    assert_problem(
        client.get("/v1/accounts/acme", headers=ingest_headers), 403, "insufficient_scope"
    )
    assert_problem(put(client, ingest_headers, GROWTH), 403, "insufficient_scope")
    assert (
        client.get("/v1/accounts/acme")
        .headers["content-type"]
        .startswith("application/problem+json")
    )


def test_a_repeated_query_parameter_is_refused(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    # Every query parameter takes one value: ?account=a&account=b is ambiguous, never guessed.
    response = client.get("/v1/ledger/entries?account=a&account=b", headers=admin_headers)
    assert_problem(response, 422, "repeated_parameter", "account")
    single = client.get("/v1/ledger/entries?account=a", headers=admin_headers)
    assert single.status_code == 200, single.text
