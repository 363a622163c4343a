"""GET /v1/reports/nrr with numbers worked out by hand, and `upshift report nrr`."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from service.adapters.db import make_session_factory, transaction
from service.adapters.offer_tables import OfferImpressionRow, OfferViewRow
from service.cli import main
from service.domain.ledger import Engine as LedgerEngine
from tests.api.test_accounts import assert_problem
from tests.ledger_fixtures import Step, at, seed

SEAT, UPSELL, ADDON = LedgerEngine.SEAT, LedgerEngine.UPSELL, LedgerEngine.ADDON
YEAR_2026 = {"from": "2026-01-01T00:00:00Z", "to": "2027-01-01T00:00:00Z"}


def report(client: TestClient, headers: dict[str, str], **query: Any) -> dict[str, Any]:
    response = client.get("/v1/reports/nrr", params=query, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def base_of_100() -> list[Step]:
    """100 accounts of 25,000 MRR bought in December 2025: 2,500,000 MRR = 30,000,000 ARR."""
    return [Step(f"acct-{n:02d}", 25_000, at(2025, 12, 1 + n % 28)) for n in range(100)]


def test_115_percent_nrr_turns_30m_arr_into_34_5m(
    client: TestClient, db: Engine, finance_headers: dict[str, str]
) -> None:
    # Q1 2026: 30 accounts grow by 15,000 (15 seat, 10 upsell, 5 add-on) = +450,000; 5 shrink
    # by 5,000 = -25,000; 2 churn = -50,000. Retained: 2,500,000 + 375,000 = 2,875,000, so
    # NRR = 1.15 and a year later the same customers pay 2,875,000 × 12 = 34,500,000 ARR.
    # Four new accounts (40,000) grow MRR but never NRR.
    engines = [SEAT] * 15 + [UPSELL] * 10 + [ADDON] * 5
    moves = [
        Step(f"acct-{n:02d}", 40_000, at(2026, 2, 1 + n % 28), e) for n, e in enumerate(engines)
    ]
    moves += [Step(f"acct-{n:02d}", 20_000, at(2026, 3, 2), SEAT) for n in range(30, 35)]
    moves += [Step(f"acct-{n:02d}", 0, at(2026, 3, 3)) for n in (35, 36)]
    moves += [Step(f"new-{n}", 10_000, at(2026, 1, 15)) for n in range(4)]
    seed(db, base_of_100() + moves)

    body = report(client, finance_headers, granularity="quarter", **YEAR_2026)
    assert body["granularity"] == "quarter" and body["from"] == "2026-01-01T00:00:00Z"
    q1, q2, q3, q4 = body["periods"]
    assert q1 == {
        "period_start": "2026-01-01T00:00:00Z",
        "period_end": "2026-04-01T00:00:00Z",
        "currency": "USD",
        "starting_mrr_minor": 2_500_000,
        "new_minor": 40_000,
        "expansion_minor": 450_000,
        "expansion_by_engine_minor": {
            "seat": 225_000,
            "upsell": 150_000,
            "addon": 75_000,
            "strategic": 0,
            "price_uplift": 0,
        },
        "contraction_minor": 25_000,
        "churn_minor": 50_000,
        "reactivation_minor": 0,
        "ending_mrr_minor": 2_915_000,
        "retained_mrr_minor": 2_875_000,
        "gross_retained_mrr_minor": 2_425_000,
        "nrr": "1.1500",
        "grr": "0.9700",  # 2,425,000 / 2,500,000
        "quick_ratio": "6.5333",  # (40,000 + 450,000) / (25,000 + 50,000)
        "expansion_share": "0.9184",  # 450,000 / 490,000
    }
    assert q1["retained_mrr_minor"] * 12 == 34_500_000
    for quiet in (q2, q3, q4):  # nothing moves after Q1: the base simply carries over
        assert quiet["starting_mrr_minor"] == quiet["ending_mrr_minor"] == 2_915_000
        assert (quiet["nrr"], quiet["grr"], quiet["quick_ratio"]) == ("1.0000", "1.0000", None)
    assert q4["period_end"] == "2027-01-01T00:00:00Z"


def test_90_percent_nrr_turns_30m_arr_into_27m(
    client: TestClient, db: Engine, finance_headers: dict[str, str]
) -> None:
    # +100,000 expansion, -100,000 contraction, -250,000 churn: 2,500,000 -> 2,250,000.
    moves = [Step(f"acct-{n:02d}", 35_000, at(2026, 1, 5), SEAT) for n in range(10)]
    moves += [Step(f"acct-{n:02d}", 20_000, at(2026, 1, 6), SEAT) for n in range(10, 30)]
    moves += [Step(f"acct-{n:02d}", 0, at(2026, 1, 7)) for n in range(30, 40)]
    seed(db, base_of_100() + moves)
    [january] = report(
        client, finance_headers, **{"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"}
    )["periods"]
    assert january["nrr"] == "0.9000"
    assert january["retained_mrr_minor"] * 12 == 27_000_000
    assert january["grr"] == "0.8600"  # (2,500,000 - 350,000) / 2,500,000
    assert january["ending_mrr_minor"] == 2_250_000


def test_churned_then_returned_is_reactivation_not_expansion(
    client: TestClient, db: Engine, finance_headers: dict[str, str]
) -> None:
    seed(
        db,
        [
            Step("acme", 10_000, at(2025, 12, 1)),
            Step("acme", 0, at(2026, 2, 1)),
            Step("acme", 12_000, at(2026, 3, 1)),
        ],
    )
    [q1] = report(
        client,
        finance_headers,
        granularity="quarter",
        **{"from": "2026-01-01T00:00:00Z", "to": "2026-04-01T00:00:00Z"},
    )["periods"]
    assert (q1["churn_minor"], q1["reactivation_minor"], q1["expansion_minor"]) == (
        10_000,
        12_000,
        0,
    )
    assert (q1["new_minor"], q1["ending_mrr_minor"]) == (0, 12_000)
    # Its return is not retention: the cohort kept nothing of its 10,000.
    assert (q1["nrr"], q1["grr"]) == ("0.0000", "0.0000")


def test_an_upgrade_and_an_equal_downgrade_net_to_zero_but_both_count(
    client: TestClient, db: Engine, finance_headers: dict[str, str]
) -> None:
    seed(
        db,
        [
            Step("acme", 20_000, at(2026, 1, 10)),
            Step("acme", 25_000, at(2026, 2, 10), SEAT),
            Step("acme", 20_000, at(2026, 2, 20), SEAT),
        ],
    )
    body = report(
        client, finance_headers, **{"from": "2026-02-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"}
    )
    [february] = body["periods"]
    assert february["starting_mrr_minor"] == february["ending_mrr_minor"] == 20_000
    assert february["expansion_by_engine_minor"]["seat"] == 5_000
    assert february["contraction_minor"] == 5_000
    assert (february["nrr"], february["grr"], february["quick_ratio"]) == (
        "1.0000",
        "0.7500",
        "1.0000",
    )


def test_currencies_are_never_mixed_and_partial_periods_are_kept(
    client: TestClient, db: Engine, finance_headers: dict[str, str]
) -> None:
    seed(
        db,
        [
            Step("us", 10_000, at(2026, 1, 3)),
            Step("eu", 9_000, at(2026, 1, 4), currency="EUR"),
            Step("eu", 12_000, at(2026, 2, 4), ADDON, currency="EUR"),
        ],
    )
    body = report(
        client, finance_headers, **{"from": "2026-01-15T00:00:00Z", "to": "2026-02-10T00:00:00Z"}
    )
    summary = [
        (p["period_start"][:10], p["period_end"][:10], p["currency"], p["nrr"])
        for p in body["periods"]
    ]
    assert summary == [
        ("2026-01-15", "2026-02-01", "EUR", "1.0000"),
        ("2026-01-15", "2026-02-01", "USD", "1.0000"),
        ("2026-02-01", "2026-02-10", "EUR", "1.3333"),
        ("2026-02-01", "2026-02-10", "USD", "1.0000"),
    ]


def impression(offer_id: str, account: str, engine: str, *, inside: bool, days: int | None):
    return OfferImpressionRow(
        offer_id=offer_id,
        account_id=account,
        engine=engine,
        target={},
        amount_due_minor=None,
        currency="USD",
        reason_codes=[],
        signal_ids=[],
        days_since_activation=days,
        in_activation_window=inside,
        catalog_version="2026-11-01.1",
        shown_at=at(2026, 1, 10),
    )


def test_offer_funnel_and_days_to_first_expansion(
    client: TestClient,
    db: Engine,
    admin_headers: dict[str, str],
    finance_headers: dict[str, str],
) -> None:
    for account in ("a1", "a2", "a3", "a4"):  # impressions need real accounts
        client.put(
            f"/v1/accounts/{account}", json={"tier": "starter", "seats": 3}, headers=admin_headers
        )
    with transaction(make_session_factory(db)) as session:
        session.add_all(
            [
                impression("o1", "a1", "seat", inside=True, days=3),
                impression("o1", "a1", "seat", inside=True, days=3),  # shown twice, accepted once
                impression("o2", "a2", "seat", inside=True, days=5),
                impression("o3", "a3", "seat", inside=False, days=40),
                impression("o4", "a4", "upsell", inside=False, days=None),
                impression("o5", "a4", "upsell", inside=False, days=None),
                # What the frontend reported seen: o2 never was; a view of o2 reported for
                # another account, and of an offer never served, count nowhere.
                OfferViewRow(account_id="a1", offer_id="o1", seen_at=at(2026, 1, 10)),
                OfferViewRow(account_id="a3", offer_id="o3", seen_at=at(2026, 1, 10)),
                OfferViewRow(account_id="a4", offer_id="o4", seen_at=at(2026, 1, 10)),
                OfferViewRow(account_id="a4", offer_id="o5", seen_at=at(2026, 1, 10)),
                OfferViewRow(account_id="a3", offer_id="o2", seen_at=at(2026, 1, 10)),
                OfferViewRow(account_id="a1", offer_id="o9", seen_at=at(2026, 1, 10)),
            ]
        )
    # The PUTs booked 2,900 each on 2026-11-10; these upgrades come later.
    seed(
        db,
        [
            Step("a1", 3_800, at(2026, 12, 1), SEAT, offer_id="o1", days_since_activation=3),
            Step("a3", 4_700, at(2026, 12, 2), SEAT, offer_id="o3", days_since_activation=40),
            Step("a4", 9_900, at(2026, 12, 3), UPSELL, offer_id="o5", days_since_activation=12),
            Step("a4", 10_800, at(2026, 12, 4), SEAT, days_since_activation=13),
        ],
        opening={(name, "USD"): 2_900 for name in ("a1", "a3", "a4")},
    )
    funnel = report(client, finance_headers, **YEAR_2026)["offer_funnel"]
    rows = {(row["engine"], row["in_activation_window"]): row for row in funnel["rows"]}
    assert len(rows) == 8  # every engine, inside and outside the window
    assert rows[("seat", True)] == {
        "engine": "seat",
        "in_activation_window": True,
        "served": 3,  # o1 twice, o2 once
        "seen": 1,  # o1: conversion is of what customers saw, not of what the API sent
        "accepted": 1,
        "conversion": "1.0000",
    }
    assert (rows[("seat", False)]["accepted"], rows[("seat", False)]["conversion"]) == (1, "1.0000")
    upsell = rows[("upsell", False)]
    assert (upsell["served"], upsell["seen"], upsell["accepted"]) == (2, 2, 1)
    assert upsell["conversion"] == "0.5000"
    assert rows[("addon", True)]["conversion"] is None
    # First expansions: a1 after 3 days, a4 after 12, a3 after 40 -> median 12.
    assert funnel["median_days_to_first_expansion"] == "12"


@pytest.mark.parametrize(
    ("query", "code", "field"),
    [
        (
            {"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
            "invalid_report_range",
            "to",
        ),
        (
            {"from": "1969-12-01T00:00:00Z", "to": "1970-02-01T00:00:00Z"},
            "invalid_report_range",
            "from",
        ),
        (
            {"from": "2000-01-01T00:00:00Z", "to": "2030-01-01T00:00:00Z"},
            "invalid_report_range",
            "to",
        ),
        ({"from": "2026-01-01T00:00:00Z"}, "validation_error", "to"),
        ({**YEAR_2026, "granularity": "week"}, "validation_error", "granularity"),
        ({**YEAR_2026, "from": "2026-01-01"}, "validation_error", "from"),
    ],
)
def test_bad_report_queries_are_422(
    client: TestClient, finance_headers: dict[str, str], query: dict, code: str, field: str
) -> None:
    response = client.get("/v1/reports/nrr", params=query, headers=finance_headers)
    assert_problem(response, 422, code, field)


def test_240_quarters_are_allowed_but_not_241_months(
    client: TestClient, finance_headers: dict[str, str]
) -> None:
    sixty_years = {"from": "1990-01-01T00:00:00Z", "to": "2050-01-01T00:00:00Z"}
    assert report(client, finance_headers, granularity="quarter", **sixty_years)["periods"] == []
    twenty_years = {"from": "2000-01-01T00:00:00Z", "to": "2020-01-01T00:00:01Z"}
    response = client.get("/v1/reports/nrr", params=twenty_years, headers=finance_headers)
    assert_problem(response, 422, "invalid_report_range", "to")


def test_cli_report_nrr(
    db: Engine,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    client: TestClient,
    finance_headers: dict[str, str],
) -> None:
    monkeypatch.setenv("UPSHIFT_DATABASE_URL", database_url)
    seed(db, [Step("acme", 20_000, at(2026, 1, 10)), Step("acme", 25_000, at(2026, 2, 10), SEAT)])
    runner = CliRunner()
    arguments = ["report", "nrr", "--from", "2026-01-01", "--to", "2026-03-01"]
    table = runner.invoke(main, arguments)
    assert table.exit_code == 0, table.output
    assert "2026-02-01  USD         20000           0       5000" in table.output
    assert "1.2500" in table.output
    document = json.loads(runner.invoke(main, [*arguments, "--json"]).output)
    assert document["periods"][1]["nrr"] == "1.2500"
    # The API's JSON exactly, instants included ("…Z", not "+00:00").
    window = {"from": "2026-01-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"}
    api = report(client, finance_headers, **window)
    assert document == api
    assert document["periods"][0]["period_start"] == "2026-01-01T00:00:00Z"
    bad = runner.invoke(main, ["report", "nrr", "--from", "2026-03-01", "--to", "2026-01-01"])
    assert bad.exit_code == 2 and "'to' must be after 'from'" in bad.output
