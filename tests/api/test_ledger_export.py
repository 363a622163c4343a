"""GET /v1/ledger/export: streamed CSV and JSONL with documented columns, filtered by time."""

from __future__ import annotations

import csv
import io
import json

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from service.domain.ledger import Engine as LedgerEngine
from service.services.ledger_export import CREDIT_COLUMNS, EXPORT_COLUMNS
from service.services.renewals import renew_due_accounts
from tests.api.test_accounts import assert_problem
from tests.api.test_upgrades import upgrade
from tests.fakes.clock import FakeClock
from tests.ledger_fixtures import Step, at, seed

HISTORY = [
    Step("acme", 17_800, at(2026, 1, 5)),
    Step("yen-co", 120_000, at(2026, 1, 9), currency="JPY"),
    Step("acme", 20_805, at(2026, 2, 3), LedgerEngine.SEAT, offer_id="off_1"),
    Step("acme", 0, at(2026, 3, 1)),
]


def export(client: TestClient, headers: dict[str, str], **query: str):
    response = client.get("/v1/ledger/export", params=query, headers=headers)
    assert response.status_code == 200, response.text
    return response


def test_csv_has_the_documented_columns_and_decimal_twins(
    client: TestClient, db: Engine, finance_headers: dict[str, str]
) -> None:
    seed(db, HISTORY)
    response = export(client, finance_headers)
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="ledger.csv"'
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert list(rows[0]) == list(EXPORT_COLUMNS)
    assert [row["id"] for row in rows] == ["1", "2", "3", "4"]
    seat = rows[2]
    assert (seat["kind"], seat["engine"], seat["offer_id"]) == ("expansion", "seat", "off_1")
    assert (seat["mrr_before_minor"], seat["mrr_before"]) == ("17800", "178.00")
    assert (seat["mrr_after_minor"], seat["mrr_after"]) == ("20805", "208.05")
    assert (seat["mrr_delta_minor"], seat["mrr_delta"]) == ("3005", "30.05")
    assert seat["occurred_at"] == "2026-02-03T12:00:00.000000Z"
    assert seat["signal_ids"] == "[]" and seat["days_since_activation"] == ""
    assert rows[1]["mrr_after"] == "120000"  # yen have no minor unit
    assert rows[3]["mrr_delta"] == "-208.05"
    assert rows[3]["prev_hash"] == seat["hash"]


def test_jsonl_has_the_same_keys_with_typed_values(
    client: TestClient, db: Engine, finance_headers: dict[str, str]
) -> None:
    seed(db, HISTORY)
    response = export(client, finance_headers, format="jsonl")
    assert response.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert len(lines) == 4 and list(lines[0]) == list(EXPORT_COLUMNS)
    assert lines[2]["mrr_delta_minor"] == 3_005 and lines[2]["mrr_delta"] == "30.05"
    assert lines[2]["signal_ids"] == [] and lines[0]["engine"] is None


def test_time_filters_are_half_open(
    client: TestClient, db: Engine, finance_headers: dict[str, str]
) -> None:
    seed(db, HISTORY)
    window = {"from": "2026-01-09T12:00:00Z", "to": "2026-03-01T12:00:00Z"}
    rows = list(csv.DictReader(io.StringIO(export(client, finance_headers, **window).text)))
    assert [row["id"] for row in rows] == ["2", "3"]


def test_an_empty_export_is_just_the_header(
    client: TestClient, finance_headers: dict[str, str]
) -> None:
    assert export(client, finance_headers).text == ",".join(EXPORT_COLUMNS) + "\n"
    assert export(client, finance_headers, format="jsonl").text == ""


def test_bad_export_queries_are_422(client: TestClient, finance_headers: dict[str, str]) -> None:
    bad_format = client.get("/v1/ledger/export?format=parquet", headers=finance_headers)
    assert_problem(bad_format, 422, "validation_error", "format")
    backwards = client.get(
        "/v1/ledger/export",
        params={"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
        headers=finance_headers,
    )
    assert_problem(backwards, 422, "validation_error", "to")


def test_the_credit_dataset_shows_credit_granted_and_applied_with_the_running_balance(
    client: TestClient,
    db: Engine,
    clock: FakeClock,
    admin_headers: dict[str, str],
    finance_headers: dict[str, str],
) -> None:
    """Starter yearly to Growth monthly at once: 191.00 of the year is owed back; the next two
    renewals (99.00 each) are paid from it, the second partly. Finance sees each step."""
    yearly = {"tier": "starter", "interval": "year", "seats": 3}
    assert client.put("/v1/accounts/acme", json=yearly, headers=admin_headers).status_code == 201
    change = upgrade(client, admin_headers, {"target": {"tier": "growth", "interval": "month"}})
    assert change.status_code == 200, change.text
    state = client.app.state  # type: ignore[attr-defined]
    for _ in range(3):
        clock.advance(days=31)
        renew_due_accounts(
            state.session_factory, state.catalog, state.billing_gateways, clock.now()
        )

    response = export(client, finance_headers, dataset="credit")
    assert response.headers["content-disposition"] == 'attachment; filename="ledger-credit.csv"'
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert list(rows[0]) == list(CREDIT_COLUMNS)
    assert [
        (row["kind"], row["amount_minor"], row["amount"], row["balance_after_minor"])
        for row in rows
    ] == [
        ("granted", "19100", "191.00", "19100"),
        ("applied", "-9900", "-99.00", "9200"),
        ("applied", "-9200", "-92.00", "0"),
    ]  # the third renewal is paid by card alone: no credit moved
    assert {row["account_id"] for row in rows} == {"acme"}
    account = client.get("/v1/accounts/acme", headers=admin_headers).json()
    assert account["credit_balance"]["amount_minor"] == int(rows[-1]["balance_after_minor"])

    # JSONL has the same rows; a window keeps the balance counted from the start.
    lines = export(client, finance_headers, dataset="credit", format="jsonl").text.splitlines()
    assert [json.loads(line)["balance_after"] for line in lines] == ["191.00", "92.00", "0.00"]
    later = {"dataset": "credit", "from": rows[1]["occurred_at"]}
    windowed = list(csv.DictReader(io.StringIO(export(client, finance_headers, **later).text)))
    assert [row["balance_after_minor"] for row in windowed] == ["9200", "0"]
    bad = client.get("/v1/ledger/export", params={"dataset": "cash"}, headers=finance_headers)
    assert_problem(bad, 422, "validation_error", field="dataset")
