"""<upshift-pricing-table> on the /demo page in Chromium: tiers, the interval toggle, the exact
amount due today, one confirmed click, a moved price, talk to sales, keyboard and phone width.
Every amount the page shows is compared with the API's, and every upgrade with the ledger."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.browser import PHONE, TIMEOUT_MS, browser_missing, screenshot
from tests.e2e.test_browser import account, ledger
from tests.fakes.clock import FakeClock

if browser_missing():
    pytest.skip(f"browser tests skipped: {browser_missing()}", allow_module_level=True)

from playwright.sync_api import expect

expect.set_options(timeout=TIMEOUT_MS)


def open_table(page: Any, base_url: str) -> Any:
    page.goto(f"{base_url}/demo")
    page.locator("upshift-pricing-table[state=ready]").wait_for()
    return page.locator("upshift-pricing-table")


def options(http: httpx.Client, admin_headers: dict[str, str]) -> dict[tuple[str, str], dict]:
    response = http.get("/v1/accounts/demo/plan-options", headers=admin_headers)
    assert response.status_code == 200, response.text
    return {(o["tier"], o["interval"]): o for o in response.json()["options"]}


def dollars(minor: int) -> str:
    return f"${minor // 100:,}.{minor % 100:02d}"


def test_upgrade_to_a_yearly_tier_with_the_keyboard(
    page: Any,
    base_url: str,
    http: httpx.Client,
    admin_headers: dict[str, str],
    finance_headers: dict[str, str],
) -> None:
    before = ledger(http, finance_headers)
    table = open_table(page, base_url)
    starter = table.locator("li[data-tier=starter]")
    expect(starter).to_have_attribute("aria-current", "true")
    expect(starter).to_contain_text("Current plan")
    growth = table.locator("li[data-tier=growth]")
    expect(growth).to_contain_text("50 projects")
    expect(growth).to_contain_text("100,000 API calls a month")
    priced = options(http, admin_headers)
    monthly = priced[("growth", "month")]["quote"]["amount_due_now"]["amount_minor"]
    expect(page.get_by_test_id("due-growth")).to_have_text(f"{dollars(monthly)} due today")
    expect(table.locator("li[data-tier=enterprise]")).to_contain_text("Custom pricing")
    screenshot(page, "pricing-table-desktop", table)

    # The interval toggle: radio buttons, moved with the arrow keys.
    table.get_by_role("radio", name="Monthly").focus()
    page.keyboard.press("ArrowRight")
    expect(table.get_by_role("radio", name="Yearly")).to_be_checked()
    yearly = priced[("growth", "year")]
    due = dollars(yearly["quote"]["amount_due_now"]["amount_minor"])
    expect(page.get_by_test_id("due-growth")).to_have_text(f"{due} due today")
    expect(growth).to_contain_text(f"{dollars(yearly['recurring']['amount_minor'])} / year")

    table.get_by_role("button", name=f"Upgrade to Growth, {due} due today").focus()
    page.keyboard.press("Enter")
    confirm = table.get_by_role("button", name=f"Upgrade now · {due}")
    expect(confirm).to_be_focused()
    screenshot(page, "pricing-table-confirm", table)
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("table-notice")).to_have_text(
        f"You're on Growth (yearly) now. Charged {due} today."
    )
    expect(page.get_by_test_id("table-notice")).to_be_focused()
    expect(growth).to_have_attribute("aria-current", "true")

    state = account(http, admin_headers)
    assert (state["tier"], state["interval"]) == ("growth", "year")
    written = ledger(http, finance_headers)[len(before) :]
    assert len(written) == 1 and written[0]["kind"] == "expansion"
    # The widget beside it was told, and reads the new plan.
    expect(page.locator("#readout")).to_contain_text("Plan: growth")


def test_a_price_that_moved_is_shown_again_and_never_charged(
    page: Any,
    base_url: str,
    http: httpx.Client,
    clock: FakeClock,
    admin_headers: dict[str, str],
    finance_headers: dict[str, str],
) -> None:
    before = ledger(http, finance_headers)
    table = open_table(page, base_url)
    first = options(http, admin_headers)[("growth", "month")]["quote"]["amount_due_now"]
    table.locator("[data-upgrade=growth-month]").click()
    # Less of the period is left: less is due for the rest of it (within the session token's hour).
    clock.advance(minutes=50)
    moved = options(http, admin_headers)[("growth", "month")]["quote"]["amount_due_now"]
    assert moved["amount_minor"] < first["amount_minor"]
    table.get_by_role("button", name=f"Upgrade now · {dollars(first['amount_minor'])}").click()
    expect(page.get_by_test_id("table-notice")).to_have_text(
        f"The price changed: {dollars(moved['amount_minor'])} due today "
        f"(was {dollars(first['amount_minor'])}). Please review it again."
    )
    expect(page.get_by_test_id("due-growth")).to_have_text(
        f"{dollars(moved['amount_minor'])} due today"
    )
    assert ledger(http, finance_headers) == before
    assert account(http, admin_headers)["tier"] == "starter"


def test_a_declined_card_changes_nothing(
    page: Any, base_url: str, http: httpx.Client, admin_headers: dict[str, str]
) -> None:
    http.put("/demo/decline", json={"decline": True}).raise_for_status()
    table = open_table(page, base_url)
    table.locator("[data-upgrade=growth-month]").click()
    table.locator("[data-confirm]").click()
    expect(page.get_by_test_id("table-notice")).to_contain_text("Payment declined:")
    expect(page.get_by_test_id("table-notice")).to_contain_text("Nothing was charged.")
    assert account(http, admin_headers)["tier"] == "starter"


def test_talk_to_sales_records_a_signal_and_tells_the_host_page(
    page: Any, base_url: str, http: httpx.Client, admin_headers: dict[str, str]
) -> None:
    table = open_table(page, base_url)
    table.get_by_role("button", name="Talk to sales").click()
    expect(page.get_by_test_id("table-notice")).to_have_text(
        "Thanks: our team will contact you about Enterprise."
    )
    expect(page.locator("#readout")).to_contain_text("demo asked about enterprise")
    signals = http.get("/v1/accounts/demo/signals", headers=admin_headers).json()
    keys = [(c["threshold_key"], c["motion"]) for c in signals["crossings"]]
    assert ("sales_request.enterprise", "sales_assisted") in keys


def test_the_table_is_readable_at_phone_width(phone_page: Any, base_url: str) -> None:
    table = open_table(phone_page, base_url)
    assert phone_page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    for tier in ("starter", "growth", "business", "enterprise"):
        box = table.locator(f"li[data-tier={tier}]").bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (tier, box)
    button = table.locator("[data-upgrade=growth-month]")
    button.scroll_into_view_if_needed()
    box = button.bounding_box()
    assert box["height"] >= 44 and box["x"] + box["width"] <= PHONE["width"]
    screenshot(phone_page, "pricing-table-phone", table)
