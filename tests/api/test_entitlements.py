"""GET /v1/accounts/{id}/entitlements[/{feature}]: the product's feature gates."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from service.api.deps import product_principal
from service.api.routes.entitlements import (
    EntitlementOut,
    EntitlementsOut,
    entitlements_body,
    entitlements_page,
)
from service.domain.entitlements import entitlement_of, entitlements_of
from service.domain.periods import Period
from service.domain.usage import FeatureUsage, UsageSnapshot
from tests.api.test_accounts import assert_problem
from tests.fakes.clock import FakeClock
from tests.usage_fixtures import event, ingest, put_account


def gates(client: TestClient, headers: dict[str, str], account: str = "acme") -> dict[str, Any]:
    response = client.get(f"/v1/accounts/{account}/entitlements", headers=headers)
    assert response.status_code == 200, response.text
    return {row["feature"]: row for row in response.json()["features"]}


def session_headers(client: TestClient, admin: dict[str, str]) -> dict[str, str]:
    token = client.post("/v1/accounts/acme/session-tokens", headers=admin).json()["token"]
    return {"Authorization": f"Bearer {token}"}


def test_every_feature_from_the_tier_add_ons_and_counters(
    client: TestClient,
    admin_headers: dict[str, str],
    ingest_headers: dict[str, str],
    clock: FakeClock,
) -> None:
    put_account(
        client, admin_headers, tier="growth", seats=6, addons={"audit_log": 1, "api_pack": 1}
    )
    ingest(
        client,
        ingest_headers,
        event("a", quantity=150_000),
        event("p", feature="projects", quantity=50),
        event("s", feature="seats", quantity=4, action="set"),
    )
    found = gates(client, ingest_headers)
    assert found["api_calls"] == {
        "feature": "api_calls",
        "kind": "metered",
        "allowed": True,
        "limit": 200_000,  # Growth's 100,000 and the API pack's 100,000
        "used": 150_000,
        "remaining": 50_000,
        "resets_at": "2026-12-01T00:00:00Z",  # calendar month
    }
    assert found["projects"]["allowed"] is False and found["projects"]["remaining"] == 0
    assert found["projects"]["resets_at"] is None  # capacity: never resets
    assert found["audit_log"] == {
        "feature": "audit_log",
        "kind": "boolean",
        "allowed": True,  # granted by the add-on, not Growth
        "limit": True,
        "used": None,
        "remaining": None,
        "resets_at": None,
    }
    assert found["sso"]["allowed"] is False
    assert (found["seats"]["used"], found["seats"]["limit"], found["seats"]["remaining"]) == (
        4,
        6,
        2,
    )
    one = client.get("/v1/accounts/acme/entitlements/api_calls", headers=ingest_headers)
    assert one.json() == found["api_calls"]


def test_a_change_is_seen_at_once_although_answers_are_cached(
    client: TestClient,
    admin_headers: dict[str, str],
    ingest_headers: dict[str, str],
) -> None:
    put_account(client, admin_headers, tier="starter", seats=3)
    browser = session_headers(client, admin_headers)
    assert gates(client, browser)["api_calls"]["remaining"] == 10_000
    ingest(client, ingest_headers, event("a", quantity=10_000))
    after = gates(client, browser)["api_calls"]
    assert (after["used"], after["remaining"], after["allowed"]) == (10_000, 0, False)
    put_account(client, admin_headers, tier="starter", seats=3, addons={"api_pack": 1})
    assert gates(client, browser)["api_calls"]["allowed"] is True


def test_access_and_errors(
    client: TestClient,
    admin_headers: dict[str, str],
    finance_headers: dict[str, str],
) -> None:
    put_account(client, admin_headers)
    put_account(client, admin_headers, "other")
    assert_problem(
        client.get("/v1/accounts/acme/entitlements/teleport", headers=admin_headers),
        404,
        "unknown_feature",
    )
    assert_problem(
        client.get("/v1/accounts/acme/entitlements", headers=finance_headers),
        403,
        "insufficient_scope",
    )
    assert client.get("/v1/accounts/acme/entitlements").status_code == 401
    browser = session_headers(client, admin_headers)
    assert client.get("/v1/accounts/other/entitlements", headers=browser).status_code == 404
    assert_problem(
        client.get("/v1/accounts/ghost/entitlements", headers=admin_headers),
        404,
        "account_not_found",
    )


def test_counters_of_a_new_period_after_the_period_ends(
    client: TestClient,
    admin_headers: dict[str, str],
    ingest_headers: dict[str, str],
    clock: FakeClock,
) -> None:
    put_account(client, admin_headers, tier="starter", seats=3)
    ingest(client, ingest_headers, event("a", quantity=9_000))
    assert gates(client, ingest_headers)["api_calls"]["used"] == 9_000
    clock.set(datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC))  # a new calendar month
    fresh = gates(client, ingest_headers)["api_calls"]
    assert (fresh["used"], fresh["resets_at"]) == (0, "2027-01-01T00:00:00Z")


limits = st.one_of(st.none(), st.booleans(), st.integers(0, 10**12))


@given(used=st.integers(0, 10**12), limit=limits)
def test_allowed_means_something_remains(used: int, limit: int | bool | None) -> None:
    period = Period(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    gate = entitlement_of(FeatureUsage("f", "metered", used, limit, period))
    if isinstance(limit, bool):
        assert gate.allowed is limit and gate.remaining is None
    elif limit is None:
        assert gate.allowed and gate.remaining is None
    else:
        assert gate.remaining == max(limit - used, 0)
        assert gate.allowed == (used < limit)
    snapshot = UsageSnapshot("a", {"f": FeatureUsage("f", "metered", used, limit, period)})
    assert entitlements_of(snapshot, datetime(2026, 11, 20, tzinfo=UTC)).valid_until == datetime(
        2026, 11, 20, tzinfo=UTC
    )


def test_the_page_load_path_answers_exactly_as_the_route(
    client: TestClient, app: Any, admin_headers: dict[str, str]
) -> None:
    put_account(client, admin_headers, tier="growth", seats=6, addons={"audit_log": 1})
    browser = session_headers(client, admin_headers)
    first = client.get("/v1/accounts/acme/entitlements", headers=browser)  # a miss: the route

    def not_reached() -> None:
        raise AssertionError("the FastAPI route was reached")

    app.dependency_overrides[product_principal] = not_reached
    try:
        second = client.get("/v1/accounts/acme/entitlements", headers=browser)  # cached
    finally:
        app.dependency_overrides.clear()
    assert second.status_code == first.status_code == 200
    assert second.content == first.content
    for name in ("content-type", "content-length", "cache-control"):
        assert second.headers[name] == first.headers[name], name
    metrics = client.get("/metrics").text
    assert 'route="/v1/accounts/{account_id}/entitlements",status="200"} 2.0' in metrics


@given(
    used=st.integers(0, 10**12),
    limit=limits,
    at=st.datetimes(  # hypothesis bounds are naive; the values drawn are UTC
        min_value=datetime(2000, 1, 1),  # noqa: DTZ001
        max_value=datetime(2100, 1, 1),  # noqa: DTZ001
        timezones=st.just(UTC),
    ),
)
def test_the_body_rendered_once_is_the_response_models_json(
    used: int, limit: int | bool | None, at: datetime
) -> None:
    """The cached page puts only `at` into JSON rendered once: byte for byte the model's."""
    period = Period(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    snapshot = UsageSnapshot(
        "acme",
        {
            "api_calls": FeatureUsage("api_calls", "metered", used, limit, period),
            "sso": FeatureUsage("sso", "boolean", 0, True, None),
        },
    )
    found = entitlements_of(snapshot, period.end)
    expected = EntitlementsOut(
        account_id="acme", at=at, features=[EntitlementOut.of(e) for e in found.features.values()]
    ).model_dump_json()
    assert entitlements_body(entitlements_page(found), at) == expected.encode()
