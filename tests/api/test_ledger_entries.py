"""GET /v1/ledger/entries, and the account PUT writing one admin movement per MRR change."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from service.domain.ledger import Engine as LedgerEngine
from tests.api.test_accounts import assert_problem
from tests.fakes.clock import FakeClock
from tests.ledger_fixtures import Step, assert_ledger_matches_mrr, at, seed

GROWTH = {"tier": "growth", "interval": "month", "seats": 7, "addons": {"api_pack": 1}}


def put(client: TestClient, headers: dict[str, str], body: dict[str, Any], account: str = "acme"):
    response = client.put(f"/v1/accounts/{account}", json=body, headers=headers)
    assert response.status_code in (200, 201), response.text
    return response.json()


def entries(client: TestClient, headers: dict[str, str], **query: Any) -> dict[str, Any]:
    response = client.get("/v1/ledger/entries", params=query, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_account_puts_record_admin_movements(
    client: TestClient,
    db: Engine,
    clock: FakeClock,
    admin_headers: dict[str, str],
    finance_headers: dict[str, str],
) -> None:
    put(client, admin_headers, GROWTH)  # 9,900 + 2 × 1,500 + 4,900 = 17,800
    assert_ledger_matches_mrr(db, "acme")
    clock.advance(days=3)
    put(client, admin_headers, {**GROWTH, "seats": 9})  # + 2 × 1,500
    put(client, admin_headers, {**GROWTH, "seats": 9})  # the same state: no movement
    assert_ledger_matches_mrr(db, "acme")
    clock.advance(days=3)
    put(client, admin_headers, {**GROWTH, "seats": 9, "status": "canceled"})
    assert_ledger_matches_mrr(db, "acme")
    clock.advance(days=30)
    put(client, admin_headers, {"tier": "business", "seats": 10})
    assert_ledger_matches_mrr(db, "acme")

    page = entries(client, finance_headers)
    moves = [
        (e["kind"], e["engine"], e["mrr_before_minor"], e["mrr_after_minor"], e["mrr_delta_minor"])
        for e in page["entries"]
    ]
    assert moves == [
        ("new", None, 0, 17_800, 17_800),
        ("expansion", "seat", 17_800, 20_800, 3_000),
        ("churn", None, 20_800, 0, -20_800),
        ("reactivation", None, 0, 29_900, 29_900),  # it paid before: a return, not new MRR
    ]
    first = page["entries"][0]
    assert first["source"] == "admin" and first["motion"] == "cs_assisted"
    assert first["idempotency_key"] == "admin:put:acme:1"
    assert first["catalog_version"] == "2026-11-01.1"
    assert first["occurred_at"] == "2026-11-10T12:00:00Z"
    assert first["prev_hash"] == "0" * 64 and len(first["hash"]) == 64
    assert page["entries"][1]["prev_hash"] == first["hash"]
    assert page["next_cursor"] is None


def test_yearly_accounts_book_normalized_mrr(
    client: TestClient, db: Engine, admin_headers: dict[str, str], finance_headers: dict[str, str]
) -> None:
    put(client, admin_headers, {"tier": "starter", "interval": "year", "seats": 3})
    assert_ledger_matches_mrr(db, "acme")
    [entry] = entries(client, finance_headers)["entries"]
    assert entry["mrr_after_minor"] == 2_417  # 29,000 / 12, half away from zero


def test_sales_assisted_tier_has_no_list_mrr_to_book(
    client: TestClient, db: Engine, admin_headers: dict[str, str], finance_headers: dict[str, str]
) -> None:
    put(client, admin_headers, {"tier": "enterprise", "seats": 120})
    assert entries(client, finance_headers)["entries"] == []
    assert_ledger_matches_mrr(db, "acme")


def test_cursor_pagination_walks_every_entry_once(
    client: TestClient, db: Engine, finance_headers: dict[str, str]
) -> None:
    seed(db, [Step(f"acct-{n}", 1_000 * (n + 1), at(2026, 1, n + 1)) for n in range(7)])
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        query = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = entries(client, finance_headers, **query)
        seen += [entry["id"] for entry in page["entries"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and seen == sorted(seen) and len(set(seen)) == 7


def test_filters(client: TestClient, db: Engine, finance_headers: dict[str, str]) -> None:
    seed(
        db,
        [
            Step("acme", 10_000, at(2026, 1, 5)),
            Step("globex", 5_000, at(2026, 1, 20)),
            Step("acme", 13_000, at(2026, 2, 3), LedgerEngine.SEAT),
            Step("acme", 20_000, at(2026, 3, 1, 0), LedgerEngine.UPSELL),
            Step("globex", 0, at(2026, 3, 9)),
        ],
    )

    def ids(**query: Any) -> list[tuple[str, str]]:
        page = entries(client, finance_headers, **query)
        return [(entry["account_id"], entry["kind"]) for entry in page["entries"]]

    assert ids(account="globex") == [("globex", "new"), ("globex", "churn")]
    assert ids(kind="expansion") == [("acme", "expansion"), ("acme", "expansion")]
    assert ids(engine="upsell") == [("acme", "expansion")]
    # [from, to): the upsell at exactly 2026-03-01T00:00Z is outside a range ending there.
    in_range = ids(**{"from": "2026-01-20T12:00:00Z", "to": "2026-03-01T00:00:00Z"})
    assert in_range == [("globex", "new"), ("acme", "expansion")]
    assert ids(**{"from": "2026-03-01T01:00:00+01:00"}) == [
        ("acme", "expansion"),
        ("globex", "churn"),
    ]


@pytest.mark.parametrize(
    ("query", "code", "field"),
    [
        ({"cursor": "bm90LWEtY3Vyc29y"}, "invalid_cursor", "cursor"),
        ({"cursor": "x"}, "invalid_cursor", "cursor"),
        ({"cursor": "no spaces"}, "validation_error", "cursor"),
        ({"limit": 0}, "validation_error", "limit"),
        ({"limit": 1001}, "validation_error", "limit"),
        ({"kind": "upgrade"}, "validation_error", "kind"),
        ({"from": "2026-01-01T00:00:00"}, "validation_error", "from"),
        ({"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "validation_error", "to"),
        ({"to": "1700000000"}, "validation_error", "to"),  # no Unix times: RFC 3339 only
        ({"acount": "acme"}, "validation_error", "acount"),  # a misspelt filter is no filter
    ],
)
def test_bad_queries_are_422_naming_the_parameter(
    client: TestClient, finance_headers: dict[str, str], query: dict, code: str, field: str
) -> None:
    response = client.get("/v1/ledger/entries", params=query, headers=finance_headers)
    assert_problem(response, 422, code, field)


def test_the_ledger_needs_the_finance_scope(
    client: TestClient, ingest_headers: dict[str, str], admin_headers: dict[str, str]
) -> None:
    for path in ("/v1/ledger/entries", "/v1/ledger/export", "/v1/reports/nrr"):
        assert_problem(client.get(path), 401, "missing_credentials")
        assert_problem(client.get(path, headers=ingest_headers), 403, "insufficient_scope")
    assert client.get("/v1/ledger/entries", headers=admin_headers).status_code == 200
