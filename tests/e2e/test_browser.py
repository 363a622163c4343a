"""The widget, the /demo page and the /dashboard in a real browser (Debian's Chromium).

Each test runs the service in demo mode on a loopback port against the test database, drives
the page like a customer (keyboard included) and then checks through the API that the account
and the ledger changed exactly as the page said. Screenshots go to test-artifacts/e2e/.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.e2e.browser import PHONE, TIMEOUT_MS, browser_missing, screenshot
from tests.fakes.clock import FakeClock
from tests.usage_fixtures import wait_for

if browser_missing():
    pytest.skip(f"browser tests skipped: {browser_missing()}", allow_module_level=True)

from playwright.sync_api import expect

expect.set_options(timeout=TIMEOUT_MS)


def wait_state(page: Any, state: str) -> None:
    page.locator(f"upshift-offers[state={state}]").wait_for()


def invite_teammates(page: Any, count: int) -> None:
    """Relay reports active seats one invitation at a time, as its backend would."""
    readout = page.locator("#readout")
    expect(readout).to_contain_text("active of")
    for _ in range(count):
        used = int(re.search(r"(\d+) active of", readout.inner_text()).group(1))
        page.get_by_role("button", name="Invite teammate").click()
        expect(readout).to_contain_text(f"{used + 1} active of")


def ledger(http: httpx.Client, finance_headers: dict[str, str]) -> list[dict[str, Any]]:
    response = http.get("/v1/ledger/entries", params={"account": "demo"}, headers=finance_headers)
    assert response.status_code == 200, response.text
    return response.json()["entries"]


def account(http: httpx.Client, admin_headers: dict[str, str]) -> dict[str, Any]:
    return http.get("/v1/accounts/demo", headers=admin_headers).json()


def seat_funnel(http: httpx.Client, finance_headers: dict[str, str]) -> tuple[int, int, int]:
    """(served, seen, accepted) of seat offers this year, in and out of the activation window."""
    year = {"from": "2026-01-01T00:00:00Z", "to": "2027-01-01T00:00:00Z"}
    response = http.get("/v1/reports/nrr", params=year, headers=finance_headers)
    assert response.status_code == 200, response.text
    rows = [r for r in response.json()["offer_funnel"]["rows"] if r["engine"] == "seat"]
    return tuple(sum(r[name] for r in rows) for name in ("served", "seen", "accepted"))


def open_seat_offer(page: Any, base_url: str) -> None:
    page.goto(f"{base_url}/demo")
    wait_state(page, "none")
    invite_teammates(page, 3)
    wait_state(page, "offer")
    expect(page.get_by_role("heading", name="Add 1 seat")).to_be_visible()


def test_upgrade_from_the_demo_page_with_the_keyboard(
    page: Any,
    demo_app: FastAPI,
    base_url: str,
    http: httpx.Client,
    admin_headers: dict[str, str],
    finance_headers: dict[str, str],
) -> None:
    before = ledger(http, finance_headers)
    page.goto(f"{base_url}/demo")
    wait_state(page, "none")
    html = page.content()
    assert "upk_" not in html, "the demo page must not embed a server key"
    assert page.get_attribute("upshift-offers", "session-token").startswith("ust_")
    expect(page.get_by_role("heading", name="You're all set")).to_be_visible()
    screenshot(page, "demo-desktop-no-offer")

    invite_teammates(page, 3)
    wait_state(page, "offer")
    expect(page.get_by_role("heading", name="Add 1 seat")).to_be_visible()
    expect(page.get_by_test_id("reasons")).to_contain_text("100% of your purchased seats")
    expect(page.get_by_test_id("amount-due")).to_have_text("$9.00")
    expect(page.locator("upshift-offers .status")).to_have_text(
        "Upgrade available: Add 1 seat, $9.00 due today."
    )
    if page.get_attribute("upshift-offers", "usage-unavailable") is None:
        expect(page.get_by_test_id("meters")).to_contain_text("3 of 3 seats in use")
    screenshot(page, "demo-desktop-offer")

    page.get_by_role("button", name="Review upgrade").focus()
    page.keyboard.press("Enter")
    wait_state(page, "confirm")
    confirm = page.get_by_role("button", name="Upgrade now · $9.00")
    expect(confirm).to_be_focused()
    screenshot(page, "demo-desktop-confirm")
    page.keyboard.press("Enter")

    wait_state(page, "success")
    expect(page.get_by_test_id("success")).to_have_text(
        "Now on Starter, 4 seats. Charged $9.00 today."
    )
    expect(page.get_by_role("button", name="Done")).to_be_focused()
    expect(page.locator("upshift-offers .status")).to_have_text("Upgrade complete. Charged $9.00.")
    expect(page.locator("#readout")).to_contain_text("3 active of 4 seats")
    if page.get_attribute("upshift-offers", "usage-unavailable") is None:
        # The meters are read again as soon as the upgrade succeeds, not when Done is clicked.
        expect(page.get_by_test_id("meters")).to_contain_text("3 of 4 seats in use")
    screenshot(page, "demo-desktop-success")

    state = account(http, admin_headers)
    assert (state["tier"], state["seats"], state["version"]) == ("starter", 4, 2)
    written = ledger(http, finance_headers)[len(before) :]
    assert len(written) == 1
    assert (written[0]["kind"], written[0]["engine"]) == ("expansion", "seat")
    assert written[0]["mrr_delta_minor"] == 900 and written[0]["offer_id"].startswith("off_")
    # The funnel: the one offer the widget displayed was seen, once, and accepted.
    demo_app.state.impressions.flush()  # served offers are written off the request path
    wait_for(lambda: seat_funnel(http, finance_headers)[1] == 1, "the widget reported the offer")
    assert seat_funnel(http, finance_headers)[1:] == (1, 1)

    page.keyboard.press("Enter")  # Done: back to the plan, the offer is gone at 3 of 4 seats
    wait_state(page, "none")


def test_demo_page_is_readable_at_phone_width(phone_page: Any, base_url: str) -> None:
    open_seat_offer(phone_page, base_url)
    assert phone_page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    for name in ("Review upgrade", "Invite teammate", "+5,000 API calls"):
        box = phone_page.get_by_role("button", name=name).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (name, box)
    screenshot(phone_page, "demo-phone-offer")
    phone_page.get_by_role("button", name="Review upgrade").click()
    wait_state(phone_page, "confirm")
    assert phone_page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(phone_page, "demo-phone-confirm")
    screenshot(phone_page, "demo-phone-card", phone_page.locator("upshift-offers"))


def test_api_calls_bring_an_add_on_offer(page: Any, base_url: str) -> None:
    page.goto(f"{base_url}/demo")
    wait_state(page, "none")
    page.get_by_role("button", name="+5,000 API calls").click()
    expect(page.locator("#readout")).to_contain_text("5,000 of 10,000 API calls")
    wait_state(page, "none")
    page.get_by_role("button", name="+5,000 API calls").click()
    expect(page.locator("#readout")).to_contain_text("10,000 of 10,000 API calls")
    wait_state(page, "offer")
    expect(page.get_by_test_id("reasons")).to_contain_text("API calls: 100% of your limit used.")
    expect(page.get_by_test_id("amount-due")).to_have_text(re.compile(r"^\$\d+\.\d\d$"))
    # The plan line says what changes: the add-on, not "Starter, 3 seats -> Starter, 3 seats".
    expect(page.get_by_test_id("plan-change")).to_have_text(
        "Starter, 3 seats → Starter, 3 seats, API pack (+100,000 calls a month)"
    )


def test_double_click_upgrades_once(
    page: Any,
    base_url: str,
    http: httpx.Client,
    admin_headers: dict[str, str],
    finance_headers: dict[str, str],
) -> None:
    before = ledger(http, finance_headers)
    posts: list[Any] = []
    page.on(
        "request",
        lambda r: posts.append(r) if r.method == "POST" and r.url.endswith("/upgrades") else None,
    )
    open_seat_offer(page, base_url)
    page.get_by_role("button", name="Review upgrade").click()
    page.get_by_role("button", name="Upgrade now · $9.00").dblclick()
    wait_state(page, "success")
    assert len(posts) == 1, "the second click of a double click must not send a request"
    assert len(ledger(http, finance_headers)) == len(before) + 1
    assert account(http, admin_headers)["seats"] == 4


def test_a_lost_response_is_retried_with_the_same_key(
    page: Any,
    base_url: str,
    http: httpx.Client,
    admin_headers: dict[str, str],
    finance_headers: dict[str, str],
) -> None:
    before = ledger(http, finance_headers)
    keys: list[str] = []

    def lose_the_first_answer(route: Any) -> None:
        keys.append(route.request.headers["idempotency-key"])
        if len(keys) == 1:
            route.fetch()  # the service applies the upgrade...
            route.abort("connectionreset")  # ...and the answer never reaches the browser
        else:
            route.continue_()

    page.route("**/v1/accounts/demo/upgrades", lose_the_first_answer)
    open_seat_offer(page, base_url)
    page.get_by_role("button", name="Review upgrade").click()
    page.get_by_role("button", name="Upgrade now · $9.00").click()
    wait_state(page, "retry")
    expect(page.get_by_role("button", name="Retry upgrade")).to_be_focused()
    screenshot(page, "demo-desktop-retry")
    assert len(ledger(http, finance_headers)) == len(before) + 1  # it did happen, once

    with page.expect_response("**/v1/accounts/demo/upgrades") as answer:
        page.get_by_role("button", name="Retry upgrade").click()
    assert answer.value.status == 200
    assert answer.value.headers.get("idempotent-replayed") == "true"
    wait_state(page, "success")
    assert len(keys) == 2 and keys[0] == keys[1]
    uuid.UUID(keys[0])  # crypto.randomUUID
    assert len(ledger(http, finance_headers)) == len(before) + 1
    assert account(http, admin_headers)["version"] == 2


def test_a_declined_payment_shows_the_reason_and_changes_nothing(
    page: Any,
    base_url: str,
    http: httpx.Client,
    admin_headers: dict[str, str],
    finance_headers: dict[str, str],
) -> None:
    before = ledger(http, finance_headers)
    page.goto(f"{base_url}/demo")
    wait_state(page, "none")
    page.get_by_label("Decline payments").check()
    expect(page.locator("#readout")).to_contain_text("payments decline")
    invite_teammates(page, 3)
    wait_state(page, "offer")
    page.get_by_role("button", name="Review upgrade").click()
    page.get_by_role("button", name="Upgrade now · $9.00").click()

    wait_state(page, "declined")
    expect(page.get_by_role("heading", name="Payment declined")).to_be_visible()
    expect(page.get_by_test_id("decline-reason")).to_have_text("Your card was declined.")
    expect(page.get_by_role("button", name="Try again")).to_be_focused()
    expect(page.locator("upshift-offers .status")).to_have_text(
        "Payment declined: Your card was declined."
    )
    screenshot(page, "demo-desktop-declined")
    assert account(http, admin_headers)["version"] == 1
    assert len(ledger(http, finance_headers)) == len(before)

    page.get_by_label("Decline payments").uncheck()
    expect(page.locator("#readout")).not_to_contain_text("payments decline")
    page.get_by_role("button", name="Try again").click()
    page.get_by_role("button", name="Upgrade now · $9.00").click()
    wait_state(page, "success")
    assert len(ledger(http, finance_headers)) == len(before) + 1


def test_an_expired_offer_is_fetched_again_with_the_new_amount(
    page: Any,
    base_url: str,
    clock: FakeClock,
    http: httpx.Client,
    finance_headers: dict[str, str],
) -> None:
    before = ledger(http, finance_headers)
    open_seat_offer(page, base_url)
    page.get_by_role("button", name="Review upgrade").click()
    wait_state(page, "confirm")
    clock.advance(minutes=50)  # past the offer's 15 minutes; 50 minutes less to prorate
    with page.expect_response("**/upgrades") as answer:
        page.get_by_role("button", name="Upgrade now · $9.00").click()
    assert answer.value.status == 409
    wait_state(page, "offer")
    expect(page.get_by_test_id("price-changed")).to_have_text(
        "The price changed: $8.99 due today (was $9.00). Please review it again."
    )
    expect(page.get_by_test_id("amount-due")).to_have_text("$8.99")
    expect(page.locator("upshift-offers .status")).to_have_text(
        "The price changed: $8.99 due today."
    )
    screenshot(page, "demo-desktop-price-changed")
    page.get_by_role("button", name="Review upgrade").click()
    page.get_by_role("button", name="Upgrade now · $8.99").click()
    wait_state(page, "success")
    expect(page.get_by_test_id("success")).to_contain_text("Charged $8.99 today.")
    assert len(ledger(http, finance_headers)) == len(before) + 1


def test_a_changed_account_withdraws_the_offer(
    page: Any, base_url: str, http: httpx.Client, admin_headers: dict[str, str]
) -> None:
    open_seat_offer(page, base_url)
    page.get_by_role("button", name="Review upgrade").click()
    wait_state(page, "confirm")
    # Meanwhile an admin buys seats elsewhere: the account version moves on.
    changed = http.put(
        "/v1/accounts/demo", json={"tier": "starter", "seats": 6}, headers=admin_headers
    )
    assert changed.status_code == 200, changed.text
    with page.expect_response("**/upgrades") as answer:
        page.get_by_role("button", name="Upgrade now · $9.00").click()
    assert answer.value.status == 409
    wait_state(page, "none")
    expect(page.locator("upshift-offers")).to_contain_text(
        "Your plan changed, so that offer ($9.00 due today) is no longer available."
    )
    assert account(http, admin_headers)["seats"] == 6


def test_dashboard_shows_the_new_movement_and_exports_csv(
    page: Any,
    demo_app: FastAPI,
    base_url: str,
    clock: FakeClock,
    http: httpx.Client,
    admin_headers: dict[str, str],
    finance_headers: dict[str, str],
) -> None:
    # A month in: the demo account pays at the start of December, then takes a seat offer.
    clock.advance(days=35)
    http.post("/demo/simulate", json={"seats": 3}).raise_for_status()
    offers = http.get("/v1/accounts/demo/upgrade-offers", headers=admin_headers).json()["offers"]
    seat = next(o for o in offers if o["engine"] == "seat")
    # The product's own UI displayed it, and says so (the widget does this by itself).
    seen = http.put(f"/v1/accounts/demo/seen-offers/{seat['id']}", headers=admin_headers)
    assert seen.status_code == 200, seen.text
    done = http.post(
        "/v1/accounts/demo/upgrades",
        json={"offer_token": seat["offer_token"]},
        headers={**admin_headers, "Idempotency-Key": "dashboard-test"},
    )
    assert done.status_code == 200, done.text
    demo_app.state.impressions.flush()  # written by a background thread that lifespan starts

    page.goto(f"{base_url}/dashboard?from=2026-09&to=2027-01")
    expect(page.locator("#status")).to_contain_text("Paste a finance key")
    finance_key = finance_headers["Authorization"].removeprefix("Bearer ")
    page.get_by_label("Finance key").fill(finance_key)
    page.get_by_role("button", name="Use key").click()
    expect(page.locator("#status")).to_contain_text("Report loaded")
    assert page.evaluate("sessionStorage.getItem('upshift.financeKey')") == finance_key
    assert finance_key not in page.url and page.get_by_label("Finance key").input_value() == ""

    december = page.get_by_test_id("movements-table").get_by_role("row", name=re.compile("Dec"))
    expect(december).to_contain_text("$29.00")  # starting MRR
    expect(december).to_contain_text("$9.00")  # the seat expansion
    expect(december).to_contain_text("131.03%")  # NRR: (29 + 9) / 29
    expect(page.get_by_test_id("nrr-chart").locator("path")).to_have_count(2)
    seat_row = page.get_by_test_id("funnel-table").get_by_role(
        "row", name=re.compile("^seat outside")
    )
    expect(seat_row).to_contain_text("100.00%")  # accepted of seen
    served, seen_count, accepted = seat_funnel(http, finance_headers)
    cells = seat_row.locator("td")
    expect(cells.nth(1)).to_have_text(str(served))
    expect(cells.nth(2)).to_have_text(str(seen_count))
    expect(cells.nth(3)).to_have_text(str(accepted))
    screenshot(page, "dashboard-desktop")

    with page.expect_download() as download:
        page.get_by_role("button", name="Download ledger CSV").click()
    assert download.value.suggested_filename == "upshift-ledger-2026-09-to-2027-01.csv"
    csv_text = Path(download.value.path()).read_text(encoding="utf-8")
    lines = csv_text.strip().splitlines()
    assert "mrr_delta_minor" in lines[0]
    assert sum("expansion" in line and "demo" in line for line in lines[1:]) == 1

    page.set_viewport_size(PHONE)
    # The chart is redrawn at the phone's width, so its text keeps a readable size.
    expect(page.get_by_test_id("nrr-chart")).to_have_attribute(
        "viewBox", re.compile(r"^0 0 3\d\d ")
    )
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    # Every field stays inside its card (a long input would stick out over the card's edge).
    for field in ("Finance key", "From (month)", "To (month, included)"):
        box = page.get_by_label(field).bounding_box()
        card = page.locator("section", has=page.get_by_label(field)).first.bounding_box()
        assert box["x"] + box["width"] <= card["x"] + card["width"], field
    screenshot(page, "dashboard-phone")

    page.get_by_role("button", name="Forget key").click()
    page.get_by_label("Finance key").fill("upk_not_a_key")
    page.get_by_role("button", name="Use key").click()
    expect(page.locator("#status")).to_contain_text("This key was not accepted")
