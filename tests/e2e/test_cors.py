"""The widget embedded on the product's own origin: UPSHIFT_CORS_ORIGINS allows exactly the
listed origins (none by default), preflights included."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from service.api.app import create_app
from service.settings import Settings
from tests.fakes.clock import FakeClock
from tests.live_server import live_server

PRODUCT = "https://app.example.com"
PREFLIGHT = {
    "Origin": PRODUCT,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization,content-type,idempotency-key",
}


def configured(db: Engine, settings: Settings, clock: FakeClock, *origins: str) -> FastAPI:
    return create_app(
        settings.model_copy(update={"cors_origins": list(origins)}), clock=clock, engine=db
    )


def test_nothing_is_allowed_by_default(client: TestClient) -> None:
    preflight = client.options("/v1/accounts/acme/upgrades", headers=PREFLIGHT)
    assert "access-control-allow-origin" not in preflight.headers
    answer = client.get("/v1/catalog", headers={"Origin": PRODUCT})
    assert "access-control-allow-origin" not in answer.headers


def test_listed_origins_pass_preflight_and_read_answers(
    db: Engine, settings: Settings, clock: FakeClock, admin_headers: dict[str, str]
) -> None:
    with TestClient(configured(db, settings, clock, PRODUCT)) as http:
        preflight = http.options("/v1/accounts/acme/upgrades", headers=PREFLIGHT)
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == PRODUCT
        allowed = preflight.headers["access-control-allow-headers"].lower()
        assert {"authorization", "idempotency-key"} <= set(allowed.replace(" ", "").split(","))
        other = http.options(
            "/v1/accounts/acme/upgrades", headers={**PREFLIGHT, "Origin": "https://evil.example"}
        )
        assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
        http.put("/v1/accounts/acme", json={"tier": "starter", "seats": 3}, headers=admin_headers)
        token = http.post("/v1/accounts/acme/session-tokens", headers=admin_headers).json()["token"]
        browser = {"Authorization": f"Bearer {token}", "Origin": PRODUCT}
        for _ in range(2):  # a miss (the route), then the cached page-load path
            offers = http.get("/v1/accounts/acme/upgrade-offers", headers=browser)
            assert offers.status_code == 200
            assert offers.headers["access-control-allow-origin"] == PRODUCT


@pytest.fixture
def api_and_product(
    db: Engine, settings: Settings, clock: FakeClock
) -> Iterator[tuple[str, str, FastAPI]]:
    """The API on one loopback port; the product's page on another (another origin)."""
    product_page = {"html": ""}

    async def page(_request: Any) -> HTMLResponse:
        return HTMLResponse(product_page["html"])

    product = Starlette(routes=[Route("/", page), Route("/healthz", page)])
    with live_server(product) as product_url:  # type: ignore[arg-type]
        app = configured(db, settings, clock, product_url)
        with live_server(app) as api_url:
            product_page["html"] = f"""<!doctype html><title>product</title>
<p id="out">pending</p>
<script type="module">
  const out = document.getElementById("out");
  try {{
    const answer = await fetch("{api_url}/v1/catalog");
    const tiers = Object.keys((await answer.json()).tiers).length;
    out.textContent = "status " + answer.status + " tiers " + tiers;
  }} catch (error) {{ out.textContent = "blocked"; }}
</script>"""
            yield product_url, api_url, app


def test_a_page_on_the_products_origin_reads_the_api(
    page: Any, api_and_product: tuple[str, str, FastAPI]
) -> None:
    product_url, _api_url, _app = api_and_product
    page.goto(product_url)
    page.wait_for_function("document.getElementById('out').textContent !== 'pending'")
    assert page.text_content("#out").startswith("status 200 tiers ")
