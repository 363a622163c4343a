"""Health, readiness, metrics, the public catalog and FastAPI's own errors as problem+json."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.test_accounts import assert_problem


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "catalog": "ok (2026-11-01.1)"}


def test_readiness_fails_when_the_database_is_gone(client: TestClient) -> None:
    client.app.state.engine.dispose()  # type: ignore[attr-defined]
    client.app.state.engine = __import__("sqlalchemy").create_engine(  # type: ignore[attr-defined]
        "postgresql+psycopg://nobody@127.0.0.1:1/none"
    )
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"].startswith("error")


def test_metrics_count_requests_per_route_template(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    client.get("/v1/accounts/a1", headers=admin_headers)
    client.get("/v1/accounts/a2", headers=admin_headers)
    text = client.get("/metrics").text
    sample = 'method="GET",route="/v1/accounts/{account_id}",status="404"'
    assert f"upshift_http_requests_total{{{sample}}} 2.0" in text
    assert "upshift_http_request_duration_seconds_bucket" in text
    assert "a1" not in text


def test_public_catalog_hides_provider_ids(client: TestClient) -> None:
    body = client.get("/v1/catalog").json()
    assert body["version"] == "2026-11-01.1" and body["currency"] == "USD"
    assert [t["key"] for t in body["tiers"]] == ["starter", "growth", "business", "enterprise"]
    growth = body["tiers"][1]
    assert growth["prices"]["month"]["base"] == {"amount_minor": 9900, "currency": "USD"}
    assert growth["upgrades"][0] == {"to": "business", "timing": "immediate"}
    assert "lookup_key" not in client.get("/v1/catalog").text


def test_framework_errors_are_problems(client: TestClient, admin_headers: dict[str, str]) -> None:
    assert_problem(client.get("/v1/nothing-here"), 404, "not_found")
    assert_problem(client.post("/healthz"), 405, "method_not_allowed")
    malformed = client.put(
        "/v1/accounts/acme",
        content=b"{not json",
        headers={**admin_headers, "content-type": "application/json"},
    )
    assert_problem(malformed, 422, "validation_error")
