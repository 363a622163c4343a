"""3-D Secure in the widget, in a real browser: the product's page embeds <upshift-offers>
against Upshift in Stripe mode (the real SDK against the Stripe double), for a customer whose
card requires authentication (Stripe's test card 4000 0027 6000 3184).

The customer confirms on Stripe's hosted invoice page (the double's), the webhooks reach the
service, and the widget, which kept asking with the same Idempotency-Key, shows the upgrade.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
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
from tests.api.test_upgrades import report_active_seats
from tests.e2e.browser import browser_missing, screenshot
from tests.live_server import live_server
from tests.stripe_fixtures_app import GROWTH_7, StripeWorld, ledger_rows

if browser_missing():
    pytest.skip(f"browser tests skipped: {browser_missing()}", allow_module_level=True)

from playwright.sync_api import expect


@dataclass
class Served:
    product_url: str
    api_url: str
    app: FastAPI
    html: dict[str, str]


@pytest.fixture
def served(db: Engine, stripe_settings: Settings, world: StripeWorld) -> Iterator[Served]:
    """The product's page on one loopback origin, Upshift (Stripe mode) on another."""
    html = {"page": ""}

    async def page(_request: Any) -> HTMLResponse:
        return HTMLResponse(html["page"])

    product = Starlette(routes=[Route("/", page), Route("/healthz", page)])
    with live_server(product) as product_url:  # type: ignore[arg-type]
        settings = stripe_settings.model_copy(update={"cors_origins": [product_url]})
        app = create_app(settings, clock=world.clock, engine=db)
        with live_server(app) as api_url:
            yield Served(product_url, api_url, app, html)


def confirm_the_seat_offer(page: Any, served: Served, admin_headers: dict[str, str]) -> Any:
    """The product's page with the widget for acme (a session token of its own): the seat
    offer reviewed and "Upgrade now" clicked. Returns the widget."""
    with TestClient(served.app) as http:
        token = http.post("/v1/accounts/acme/session-tokens", headers=admin_headers).json()
    api = served.api_url
    served.html["page"] = f"""<!doctype html><title>Relay</title>
<script type="module" src="{api}/static/upshift.js"></script>
<upshift-offers api-base="{api}" account-id="acme"
                session-token="{token["token"]}"></upshift-offers>"""
    page.goto(served.product_url)
    widget = page.locator("upshift-offers")
    page.locator("upshift-offers[state=offer]").wait_for()
    widget.get_by_role("button", name="Review upgrade").click()
    widget.get_by_role("button", name=re.compile("^Upgrade now")).click()
    return widget


def test_the_customer_confirms_the_payment_and_the_widget_shows_the_upgrade(
    page: Any, served: Served, admin_headers: dict[str, str], world: StripeWorld, db: Engine
) -> None:
    with TestClient(served.app) as http:
        sub = world.subscribe("acme", GROWTH_7)
        acme = world.link(http, admin_headers, "acme", GROWTH_7, sub)
        world.advance(days=15)
        world.fake.require_authentication(acme["billing_customer_id"])
        report_active_seats(http, admin_headers, 7)
    widget = confirm_the_seat_offer(page, served, admin_headers)
    page.locator("upshift-offers[state=authenticate]").wait_for()
    expect(widget.get_by_role("heading", name="Confirm the payment with your bank")).to_be_visible()
    expect(widget.get_by_test_id("requires-action")).to_contain_text("Nothing is charged")
    screenshot(page, "widget-requires-action")
    assert len(ledger_rows(db, "acme")) == 1

    with page.context.expect_page() as opened:
        widget.get_by_role("link", name="Confirm payment").click()
    stripe_page = opened.value
    stripe_page.get_by_role("button", name="Complete authentication").click()
    expect(stripe_page.locator("#status")).to_have_text("Status: paid")
    stripe_page.close()

    world.fake.deliver(f"{served.api_url}/v1/webhooks/stripe")
    page.locator("upshift-offers[state=success]").wait_for()  # the widget asked again by itself
    expect(widget).to_contain_text("You're upgraded")
    rows = ledger_rows(db, "acme")
    assert len(rows) == 2 and rows[-1].source == "self_serve_offer"


def test_a_discounted_customer_confirms_stripes_price_in_the_widget(
    page: Any, served: Served, admin_headers: dict[str, str], world: StripeWorld, db: Engine
) -> None:
    """Offers are priced at list price (locally, without asking Stripe); at confirm Stripe's
    price with the customer's 20% coupon is the authority. The widget shows it and charges
    exactly it, instead of fetching the same list-price offer again and again."""
    with TestClient(served.app) as http:
        sub = world.subscribe("acme", GROWTH_7)
        world.link(http, admin_headers, "acme", GROWTH_7, sub)
        world.advance(days=15)
        coupon = world.sdk.v1.coupons.create(params={"percent_off": 20, "duration": "forever"})
        world.sdk.v1.subscriptions.update(sub.id, params={"discounts": [{"coupon": coupon.id}]})
        world.deliver(http)
        report_active_seats(http, admin_headers, 7)
    widget = confirm_the_seat_offer(page, served, admin_headers)
    price = widget.get_by_test_id("provider-price")
    expect(price).to_contain_text("discounts")
    shown = re.search(r"\$[\d.,]+", price.inner_text()).group(0)
    screenshot(page, "widget-provider-price")
    widget.get_by_role("button", name=f"Upgrade now · {shown}").click()
    page.locator("upshift-offers[state=success]").wait_for()
    expect(widget).to_contain_text(f"Charged {shown}")
    entry = ledger_rows(db, "acme")[-1]
    assert entry.kind == "expansion" and entry.source == "self_serve_offer"
